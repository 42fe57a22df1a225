/**
 * A PostgreSQL base backup, read straight from the data directory between
 * non-exclusive `pg_backup_start` and `pg_backup_stop` on one held connection
 * (closing it would abort the backup). Works on a primary or a standby.
 * With data checksums on, every page older than the start LSN is verified as
 * it is read. Files follow the layout rules in `layout.ts`; WAL comes from the
 * archive (`wal-push`) at restore.
 */
import { realpath } from 'node:fs/promises';
import { resolve } from 'node:path';
import { ArchiveCheckError, InvalidArgumentError, PostgresError } from '../errors.js';
import type { BackupManifest, PostgresBackupInfo, TreeEntry } from '../format/manifest.js';
import type { Repository } from '../repository/repository.js';
import type { WalScope } from '../format/wal-record.js';
import { backupTree, type BackupFilesOptions, type BackupResult } from '../backup/backup-files.js';
import { connect, queryOne } from './connection.js';
import { parseLsn, pgdataDecision, relationFirstBlock, segmentName } from './layout.js';
import { pageVerifyCheck } from './page-verify.js';
import { DEFAULT_STANZA, ensureStanza } from './stanza.js';
import { isArchived } from './wal.js';

export interface PostgresBackupOptions extends BackupFilesOptions {
  /** libpq connection string; default: the PG* environment variables. */
  connectionString?: string;
  /** Data directory as seen by this process; default: the server's `data_directory`. */
  pgdata?: string;
  /** The cluster's stanza (default `main`); created with this cluster's identity when absent. */
  stanza?: string;
  /**
   * Confirm that the WAL from start to stop LSN is archived in this
   * repository before committing the backup (default true). Without it the
   * manifest is marked as needing WAL from elsewhere.
   */
  archiveCheck?: boolean;
  /** How long to wait for that WAL after pg_backup_stop, in milliseconds (default 60 s). */
  archiveTimeoutMs?: number;
  /**
   * Backups on a standby: the primary's connection string. The standby's stop
   * segment is archived only when the primary switches segments; Coffer asks
   * the primary to (pg_switch_wal) instead of waiting for traffic.
   */
  primaryConnectionString?: string;
  /** The primary's password, when it is not the standby's (PGPASSWORD) and no .pgpass gives it. */
  primaryPassword?: string;
}

export const DEFAULT_ARCHIVE_TIMEOUT_MS = 60_000;

interface ServerFacts {
  version_num: string;
  version: string;
  data_directory: string | null;
  data_checksums: string;
  in_recovery: boolean;
  system_identifier: string;
  wal_segment_size: string;
  block_size: string;
  segment_size: string;
}

export async function backupPostgres(repo: Repository, options: PostgresBackupOptions = {}): Promise<BackupResult> {
  const client = await connect(options.connectionString, 'coffer backup');
  try {
    const facts = await queryOne<ServerFacts>(
      client,
      'server facts',
      `SELECT current_setting('server_version_num') AS version_num, version() AS version,
              current_setting('data_directory', true) AS data_directory, current_setting('data_checksums') AS data_checksums,
              pg_is_in_recovery() AS in_recovery, (SELECT system_identifier::text FROM pg_control_system()) AS system_identifier,
              (SELECT setting FROM pg_settings WHERE name = 'wal_segment_size') AS wal_segment_size,
              current_setting('block_size') AS block_size,
              (SELECT setting FROM pg_settings WHERE name = 'segment_size') AS segment_size`,
    );
    const versionNum = Number(facts.version_num);
    if (versionNum < 130000) throw new PostgresError('version check', `server version ${versionNum} is older than 13, which Coffer does not support`);
    if (Number(facts.block_size) !== 8192) throw new PostgresError('version check', `block_size ${facts.block_size} is not 8192`);
    const pgdataGiven = options.pgdata ?? facts.data_directory;
    if (!pgdataGiven) throw new InvalidArgumentError('pgdata', 'the server does not reveal data_directory to this role; pass --pgdata');
    const pgdata = await realpath(resolve(pgdataGiven)).catch(() => {
      throw new InvalidArgumentError('pgdata', `${pgdataGiven} does not exist here`);
    });
    // pg_settings gives segment_size in blocks and wal_segment_size in bytes.
    const relsegBlocks = Number(facts.segment_size);
    if (!Number.isInteger(relsegBlocks) || relsegBlocks <= 0) throw new PostgresError('server facts', `unexpected segment_size ${facts.segment_size}`);
    const tablespaces = (
      await client.query<{ oid: string; name: string; location: string }>(
        `SELECT oid::text AS oid, spcname AS name, pg_tablespace_location(oid) AS location FROM pg_tablespace WHERE spcname NOT IN ('pg_default', 'pg_global')`,
      )
    ).rows.filter((t) => t.location && !t.location.startsWith('pg_tblspc/'));

    const archiveCheck = options.archiveCheck ?? true;
    // On a standby the primary archives (archive_mode there is the primary's business, unless 'always').
    if (archiveCheck && !facts.in_recovery) {
      const { mode } = await queryOne<{ mode: string }>(client, 'archive mode', `SELECT current_setting('archive_mode') AS mode`);
      if (mode === 'off') throw new ArchiveCheckError(`WAL cannot reach this repository: archive_mode is off on the server, so the backup would not be restorable from here; set archive_mode and archive_command = 'coffer … wal-push %p', or pass --no-archive-check to back up anyway`);
    }

    const stanza = options.stanza ?? DEFAULT_STANZA;
    await ensureStanza(repo, stanza, { systemIdentifier: facts.system_identifier, major: Math.floor(versionNum / 10000), walSegmentSize: Number(facts.wal_segment_size) });

    const label = `coffer ${new Date().toISOString()}`;
    const startSql = versionNum >= 150000 ? 'SELECT pg_backup_start($1, true)::text AS lsn, clock_timestamp() AS at' : 'SELECT pg_start_backup($1, true, false)::text AS lsn, clock_timestamp() AS at';
    const start = await queryOne<{ lsn: string; at: Date }>(client, 'pg_backup_start', startSql, [label]);
    const startLsn = parseLsn(start.lsn);
    const checksums = facts.data_checksums === 'on';

    const mounts = new Map(tablespaces.map((t) => [`pg_tblspc/${t.oid}`, t.location]));
    const readCheck = (e: TreeEntry) => {
      if (!checksums) return undefined;
      const firstBlock = relationFirstBlock(e.path, relsegBlocks);
      return firstBlock === undefined ? undefined : pageVerifyCheck({ label: e.path, firstBlock, startLsn });
    };
    const finish = async (): Promise<Pick<BackupManifest, 'postgres' | 'stanza'>> => {
      const stopSql =
        versionNum >= 150000
          ? 'SELECT lsn::text AS lsn, labelfile, spcmapfile, clock_timestamp() AS at FROM pg_backup_stop(false)'
          : 'SELECT lsn::text AS lsn, labelfile, spcmapfile, clock_timestamp() AS at FROM pg_stop_backup(false, false)';
      const stop = await queryOne<{ lsn: string; labelfile: string; spcmapfile: string | null; at: Date }>(client, 'pg_backup_stop', stopSql);
      const next = await queryOne<{ xid: string }>(client, 'xid horizon', 'SELECT pg_snapshot_xmax(pg_current_snapshot())::text AS xid');
      const timeline = Number(/START TIMELINE: (\d+)/.exec(stop.labelfile)?.[1] ?? NaN);
      if (!Number.isInteger(timeline)) throw new PostgresError('pg_backup_stop', 'backup_label has no START TIMELINE');
      const stopLsn = parseLsn(stop.lsn);
      if (archiveCheck) {
        if (facts.in_recovery && options.primaryConnectionString) await switchPrimaryWal(options.primaryConnectionString, options.primaryPassword);
        await waitArchivedHere(repo, { stanza, systemIdentifier: facts.system_identifier }, backupSegments(timeline, startLsn, stopLsn, Number(facts.wal_segment_size)), options.archiveTimeoutMs ?? DEFAULT_ARCHIVE_TIMEOUT_MS, facts.in_recovery && !options.primaryConnectionString);
      }
      const info: PostgresBackupInfo = {
        versionNum,
        version: facts.version,
        systemIdentifier: facts.system_identifier,
        timeline,
        startLsn: start.lsn,
        stopLsn: stop.lsn,
        stopNextXid: next.xid,
        startTime: start.at.toISOString(),
        stopTime: stop.at.toISOString(),
        standby: facts.in_recovery,
        dataChecksums: checksums,
        walSegmentSize: Number(facts.wal_segment_size),
        dataDirectory: pgdata,
        backupLabel: stop.labelfile,
        tablespaceMap: stop.spcmapfile ?? '',
        tablespaces,
        archiveChecked: archiveCheck,
      };
      return { postgres: info, stanza };
    };
    return await backupTree(
      repo,
      {
        kind: 'postgres',
        root: pgdata,
        walk: { decide: pgdataDecision, mounts },
        readCheck,
        isRelation: (e) => relationFirstBlock(e.path, relsegBlocks) !== undefined,
        isParent: (m) => m.kind === 'postgres' && m.postgres?.systemIdentifier === facts.system_identifier && (m.stanza === undefined || m.stanza === stanza),
        finish,
      },
      options,
    );
  } finally {
    // Ending the session aborts a backup still in progress, as PostgreSQL documents.
    await client.end().catch(() => undefined);
  }
}

/** The segments holding WAL from `startLsn` up to the last byte before `stopLsn`: what recovery to consistency replays. */
export function backupSegments(tli: number, startLsn: bigint, stopLsn: bigint, segmentBytes: number): string[] {
  const seg = BigInt(segmentBytes);
  const out: string[] = [];
  for (let n = startLsn / seg; n <= (stopLsn - 1n) / seg; n++) out.push(segmentName(tli, n, segmentBytes));
  return out;
}

async function switchPrimaryWal(connectionString: string, password?: string): Promise<void> {
  const primary = await connect(connectionString, 'coffer backup (primary)', password);
  try {
    await queryOne(primary, 'pg_switch_wal on the primary', 'SELECT pg_switch_wal()');
  } finally {
    await primary.end().catch(() => undefined);
  }
}

/**
 * Waits until every one of `segments` has its record in this repository:
 * not PostgreSQL's archive status (an archive_command writing elsewhere would
 * satisfy that), but what a restore from here will fetch. Looks often at
 * first: archiving a segment takes tens of milliseconds to seconds.
 */
async function waitArchivedHere(repo: Repository, scope: WalScope, segments: string[], timeoutMs: number, standbyWithoutPrimary: boolean): Promise<void> {
  const until = performance.now() + timeoutMs;
  const pending = new Set(segments);
  for (let pause = 5; ; pause = Math.min(pause * 2, 100)) {
    for (const s of [...pending]) if (await isArchived(repo, scope, s)) pending.delete(s);
    if (pending.size === 0) return;
    if (performance.now() > until) {
      const first = [...pending].sort()[0]!;
      const hint = standbyWithoutPrimary
        ? '; on a standby the last segment is archived only when the primary switches segments: pass --primary-db so Coffer asks it to'
        : '; check that archive_command is coffer wal-push into this repository and stanza, and that it succeeds (pg_stat_archiver)';
      throw new ArchiveCheckError(`was not archived in this repository within ${(timeoutMs / 1000).toFixed(0)} s after pg_backup_stop (${pending.size} of ${segments.length} segment(s) missing)${hint}; no manifest was written`, first);
    }
    await new Promise((r) => setTimeout(r, pause));
  }
}
