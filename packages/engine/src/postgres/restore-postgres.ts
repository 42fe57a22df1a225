/**
 * Restoring a PostgreSQL base backup for recovery: the files (each tablespace
 * into its original location or a mapped one, linked from `pg_tblspc/<oid>`),
 * then `backup_label` as pg_backup_stop returned it, the recovery settings in
 * `postgresql.auto.conf`, and `recovery.signal` or `standby.signal`.
 * PostgreSQL then replays archived WAL through `restore_command`.
 */
import { access, chown, mkdir, readFile, writeFile } from 'node:fs/promises';
import { isAbsolute, join } from 'node:path';
import { BackupNotFoundError, InvalidArgumentError, TargetInUseError } from '../errors.js';
import type { BackupSummary } from '../format/manifest.js';
import type { Repository } from '../repository/repository.js';
import { restoreBackup, type RestoreOptions, type RestoreResult } from '../restore/restore.js';
import { parseLsn } from './layout.js';

export interface RecoveryTarget {
  /** Exactly one of these, or none for "replay all archived WAL". */
  time?: string;
  lsn?: string;
  xid?: string;
  name?: string;
  immediate?: boolean;
  /** `latest` (default), `current`, or a timeline number. */
  timeline?: string;
  /** What the server does on reaching the target (default `promote`). */
  action?: 'promote' | 'pause' | 'shutdown';
  /** Stop just after (default) or just before the target. */
  inclusive?: boolean;
}

export interface PostgresRestoreOptions extends RestoreOptions {
  target?: RecoveryTarget;
  /** Write `standby.signal` (build a standby) instead of `recovery.signal`. */
  standby?: boolean;
  /** The `restore_command` to write, e.g. `coffer --repo … wal-fetch %f %p`. */
  restoreCommand: string;
  /** Where to put tablespaces, by name or OID (default: their original locations). */
  tablespaceMap?: Readonly<Record<string, string>>;
}

export interface PostgresRestoreResult extends RestoreResult {
  /** The settings appended to postgresql.auto.conf. */
  recoverySettings: string;
}

const BEGIN = '# coffer restore: begin';
const END = '# coffer restore: end';

function targetCount(t: RecoveryTarget): number {
  return [t.time, t.lsn, t.xid, t.name].filter((v) => v !== undefined).length + (t.immediate ? 1 : 0);
}

/** The newest postgres backup that can reach `target`: ended before it, where that can be known. */
export async function chooseBackup(repo: Repository, target: RecoveryTarget = {}): Promise<BackupSummary> {
  const all = (await repo.listBackups()).filter((b) => b.kind === 'postgres' && b.postgres);
  let fits: (b: BackupSummary) => boolean = () => true;
  if (target.time !== undefined) {
    const t = Date.parse(target.time);
    if (Number.isNaN(t)) throw new InvalidArgumentError('--target-time', `${target.time} is not a timestamp`);
    fits = (b) => Date.parse(b.postgres!.stopTime) < t;
  } else if (target.lsn !== undefined) {
    const l = parseTargetLsn(target.lsn);
    fits = (b) => parseLsn(b.postgres!.stopLsn) <= l;
  } else if (target.xid !== undefined) {
    if (!/^\d+$/.test(target.xid)) throw new InvalidArgumentError('--target-xid', `${target.xid} is not a transaction id`);
    const x = BigInt(target.xid);
    // A 32-bit xid is compared within its epoch; an xid8 as given.
    fits = (b) => (x < 2n ** 32n ? BigInt(b.postgres!.stopNextXid) & 0xffffffffn : BigInt(b.postgres!.stopNextXid)) <= x;
  }
  const chosen = all.filter(fits).pop();
  if (!chosen) throw new BackupNotFoundError(describeTarget(target), all.length ? 'no PostgreSQL backup ended before this target' : 'the repository holds no PostgreSQL backup');
  return chosen;
}

function parseTargetLsn(text: string): bigint {
  try {
    return parseLsn(text);
  } catch {
    throw new InvalidArgumentError('--target-lsn', `${text} is not an LSN like 0/1A2B3C4`);
  }
}

function describeTarget(t: RecoveryTarget): string {
  if (t.time !== undefined) return `target time ${t.time}`;
  if (t.lsn !== undefined) return `target LSN ${t.lsn}`;
  if (t.xid !== undefined) return `target xid ${t.xid}`;
  if (t.name !== undefined) return `target name ${t.name}`;
  return 'latest';
}

function quote(value: string): string {
  return `'${value.replace(/'/g, "''")}'`;
}

export function recoverySettings(restoreCommand: string, target: RecoveryTarget = {}): string {
  if (targetCount(target) > 1) throw new InvalidArgumentError('recovery target', 'give at most one of time, LSN, xid, name and immediate');
  if (target.lsn !== undefined) parseTargetLsn(target.lsn);
  const lines = [`restore_command = ${quote(restoreCommand)}`];
  if (target.time !== undefined) lines.push(`recovery_target_time = ${quote(target.time)}`);
  if (target.lsn !== undefined) lines.push(`recovery_target_lsn = ${quote(target.lsn)}`);
  if (target.xid !== undefined) lines.push(`recovery_target_xid = ${quote(target.xid)}`);
  if (target.name !== undefined) lines.push(`recovery_target_name = ${quote(target.name)}`);
  if (target.immediate) lines.push(`recovery_target = 'immediate'`);
  if (targetCount(target) > 0) {
    if (target.inclusive === false) lines.push(`recovery_target_inclusive = off`);
    lines.push(`recovery_target_action = ${quote(target.action ?? 'promote')}`);
  }
  const timeline = target.timeline ?? 'latest';
  if (!/^(latest|current|\d+)$/.test(timeline)) throw new InvalidArgumentError('--target-timeline', `${timeline} is not latest, current or a number`);
  lines.push(`recovery_target_timeline = ${quote(timeline)}`);
  return lines.join('\n') + '\n';
}

/** Restores `selector` (or the backup chosen for the target) into `dir`, ready to recover. */
export async function restorePostgres(repo: Repository, selector: string | undefined, dir: string, options: PostgresRestoreOptions): Promise<PostgresRestoreResult> {
  const settings = recoverySettings(options.restoreCommand, options.target);
  const key = selector ? (await repo.resolveBackup(selector)).key : (await chooseBackup(repo, options.target)).key;
  if (await exists(join(dir, 'postmaster.pid'))) throw new TargetInUseError(dir, 'postmaster.pid is present: stop the server (and remove a stale postmaster.pid) first');
  const manifest = await repo.readManifest(key);
  if (!manifest.postgres) throw new InvalidArgumentError('backup', `${key} is a ${manifest.kind} backup, not a PostgreSQL one`);
  const map = { ...options.tablespaceMap };
  const relocate = new Map<string, string>();
  for (const t of manifest.postgres.tablespaces) {
    const to = map[t.name] ?? map[t.oid] ?? t.location;
    delete map[t.name];
    delete map[t.oid];
    if (!isAbsolute(to)) throw new InvalidArgumentError('--tablespace-map', `${t.name}=${to}: the directory must be an absolute path`);
    relocate.set(`pg_tblspc/${t.oid}`, to);
  }
  const unknown = Object.keys(map);
  if (unknown.length) throw new InvalidArgumentError('--tablespace-map', `the backup has no tablespace ${unknown.join(', ')} (it has: ${manifest.postgres.tablespaces.map((t) => `${t.name} (${t.oid})`).join(', ') || 'none'})`);
  const result = await restoreBackup(repo, key, dir, { ...options, relocate });
  const pg = manifest.postgres;

  await mkdir(join(dir, 'pg_wal', 'archive_status'), { recursive: true, mode: 0o700 });
  await writeFile(join(dir, 'backup_label'), pg.backupLabel, { mode: 0o600 });
  // No tablespace_map: the pg_tblspc links are already made, to wherever the tablespaces went.

  const autoConf = join(dir, 'postgresql.auto.conf');
  const before = await readFile(autoConf, 'utf8').catch(() => '# Do not edit this file manually!\n');
  const kept = before.replace(new RegExp(`${BEGIN}[\\s\\S]*?${END}\\n?`, 'g'), '');
  await writeFile(autoConf, `${kept}${kept.endsWith('\n') ? '' : '\n'}${BEGIN}\n${settings}${END}\n`, { mode: 0o600 });
  await writeFile(join(dir, options.standby ? 'standby.signal' : 'recovery.signal'), '', { mode: 0o600 });

  // Files we wrote belong to the cluster's owner, like the rest of the data directory.
  const root = result.manifest.entries.find((e) => e.path === '.');
  if (root && process.getuid?.() === 0) {
    for (const f of ['backup_label', 'postgresql.auto.conf', options.standby ? 'standby.signal' : 'recovery.signal', 'pg_wal/archive_status']) {
      await chown(join(dir, f), root.uid, root.gid).catch(() => undefined);
    }
  }
  return { ...result, recoverySettings: settings };
}

async function exists(p: string): Promise<boolean> {
  return access(p).then(
    () => true,
    () => false,
  );
}
