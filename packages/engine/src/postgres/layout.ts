/**
 * What a base backup reads from a data directory and what it leaves out,
 * following PostgreSQL's documentation for low-level base backups and what
 * pg_basebackup omits: WAL (recovered from the archive instead), runtime
 * state rebuilt at start-up, temporary files and relations, and the main
 * forks of unlogged relations (recovery recreates them from their init fork).
 */
import { WAL_FILE } from '../format/wal-record.js';
import type { WalkDecision } from '../backup/walk.js';

/** Directories kept (empty) but whose contents are never copied. */
const CONTENTS_EXCLUDED = new Set(['pg_dynshmem', 'pg_notify', 'pg_serial', 'pg_snapshots', 'pg_stat_tmp', 'pg_subtrans', 'pg_replslot']);

/** Files in the data directory's top level never copied. */
const TOP_FILES_EXCLUDED = new Set([
  'postmaster.pid',
  'postmaster.opts',
  'backup_label',
  'backup_label.old',
  'tablespace_map',
  'tablespace_map.old',
  'current_logfiles',
  'current_logfiles.tmp',
  'postgresql.auto.conf.tmp',
  'recovery.signal',
  'standby.signal',
  // Coffer's own restore marker: it describes a restore, not the cluster.
  '.coffer-restore',
]);

const TEMP_RELATION = /^t\d+_\d+(_(fsm|vm|init))?(\.\d+)?$/;
export const RELATION_FILE = /^(\d+)(_(fsm|vm|init))?(\.(\d+))?$/;

export type { WalkDecision };

/**
 * Decides for one entry of the data directory (path relative to PGDATA,
 * `/`-separated). `siblings` are the names in the same directory, used to
 * spot unlogged relations by their `_init` fork.
 */
export function pgdataDecision(relPath: string, isDir: boolean, siblings: ReadonlySet<string>): WalkDecision {
  const parts = relPath.split('/');
  const name = parts[parts.length - 1]!;
  if (name.startsWith('pgsql_tmp')) return 'exclude';
  if (name === 'pg_internal.init') return 'exclude';
  // pg_wal: only the (empty) archive_status directory; WAL comes from the archive.
  if (parts[0] === 'pg_wal' && parts.length >= 2) return parts.length === 2 && isDir && name === 'archive_status' ? 'exclude-contents' : 'exclude';
  if (parts.length === 1) {
    if (isDir && CONTENTS_EXCLUDED.has(name)) return 'exclude-contents';
    if (!isDir && TOP_FILES_EXCLUDED.has(name)) return 'exclude';
  }
  if (isDir) return 'include';
  if (TEMP_RELATION.test(name)) return 'exclude';
  const rel = RELATION_FILE.exec(name);
  if (rel && rel[3] !== 'init' && isRelationDir(parts) && siblings.has(`${rel[1]}_init`)) return 'exclude';
  return 'include';
}

/** base/<db>/, global/, and pg_tblspc/<oid>/<version dir>/<db>/ hold relation files. */
export function isRelationDir(parts: readonly string[]): boolean {
  const dir = parts.slice(0, -1);
  if (dir[0] === 'global' && dir.length === 1) return true;
  if (dir[0] === 'base' && dir.length === 2) return true;
  if (dir[0] === 'pg_tblspc' && dir.length === 4) return true;
  return false;
}

/** For a relation file, the relation block number of its first page (segment × RELSEG_SIZE), else undefined. */
export function relationFirstBlock(relPath: string, relsegBlocks: number): number | undefined {
  const parts = relPath.split('/');
  if (!isRelationDir(parts)) return undefined;
  const m = RELATION_FILE.exec(parts[parts.length - 1]!);
  if (!m) return undefined;
  return Number(m[5] ?? 0) * relsegBlocks;
}

export { WAL_FILE, WAL_SEGMENT } from '../format/wal-record.js';

export function walTimeline(name: string): string | undefined {
  return WAL_FILE.exec(name)?.[1];
}

/** The segment that follows `name` on the same timeline, for a segment size in bytes. */
export function nextSegment(name: string, segmentBytes: number): string {
  const tli = name.slice(0, 8);
  const log = parseInt(name.slice(8, 16), 16);
  const seg = parseInt(name.slice(16, 24), 16);
  const perLog = Math.floor(0x100000000 / segmentBytes);
  const nseg = seg + 1 >= perLog ? 0 : seg + 1;
  const nlog = seg + 1 >= perLog ? log + 1 : log;
  return tli + nlog.toString(16).toUpperCase().padStart(8, '0') + nseg.toString(16).toUpperCase().padStart(8, '0');
}

/** The number of segment `name` (counted from LSN 0; its timeline aside): its start LSN is this × the segment size. */
export function segmentNumber(name: string, segmentBytes: number): bigint {
  const perLog = BigInt(Math.floor(0x100000000 / segmentBytes));
  return BigInt(parseInt(name.slice(8, 16), 16)) * perLog + BigInt(parseInt(name.slice(16, 24), 16));
}

/** The name of WAL segment number `segNo` (counted from LSN 0) on timeline `tli`. */
export function segmentName(tli: number, segNo: bigint, segmentBytes: number): string {
  const perLog = BigInt(Math.floor(0x100000000 / segmentBytes));
  const hex = (n: bigint | number) => n.toString(16).toUpperCase().padStart(8, '0');
  return hex(tli) + hex(segNo / perLog) + hex(segNo % perLog);
}

/**
 * The WAL files a base backup needs archived before it is usable, named as
 * PostgreSQL's own pg_backup_stop names them: the segment holding the last
 * byte before the stop LSN, and the backup history file.
 */
export function backupWalFiles(tli: number, startLsn: bigint, stopLsn: bigint, segmentBytes: number): string[] {
  const seg = BigInt(segmentBytes);
  const offset = (startLsn % seg).toString(16).toUpperCase().padStart(8, '0');
  return [segmentName(tli, (stopLsn - 1n) / seg, segmentBytes), `${segmentName(tli, startLsn / seg, segmentBytes)}.${offset}.backup`];
}

/** Parses `X/Y` into a bigint LSN. */
export function parseLsn(text: string): bigint {
  const m = /^([0-9A-Fa-f]{1,8})\/([0-9A-Fa-f]{1,8})$/.exec(text.trim());
  if (!m) throw new RangeError(`not an LSN: ${text}`);
  return (BigInt(parseInt(m[1]!, 16)) << 32n) | BigInt(parseInt(m[2]!, 16));
}

export function formatLsn(lsn: bigint): string {
  return `${(lsn >> 32n).toString(16).toUpperCase()}/${(lsn & 0xffffffffn).toString(16).toUpperCase()}`;
}
