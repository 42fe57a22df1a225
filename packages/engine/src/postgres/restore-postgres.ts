/**
 * Restoring a PostgreSQL base backup for recovery: the files (each tablespace
 * into its original location or a mapped one, linked from `pg_tblspc/<oid>`;
 * other links, `pg_wal` above all, as real directories unless mapped), then
 * `backup_label` as pg_backup_stop returned it, the recovery settings in
 * `postgresql.auto.conf`, the signal file, and last of all
 * `global/pg_control`: until it is in place an interrupted restore cannot
 * start as a cluster. PostgreSQL then replays archived WAL through
 * `restore_command`.
 */
import { chown, mkdir, open, readdir, readFile, readlink, realpath, rm } from 'node:fs/promises';
import { isAbsolute, join, resolve } from 'node:path';
import { BackupNotFoundError, InvalidArgumentError, StanzaMismatchError, TargetInUseError, TargetNotEmptyError } from '../errors.js';
import type { BackupManifest, BackupSummary } from '../format/manifest.js';
import type { LoadedBackup, Repository } from '../repository/repository.js';
import { restoreBackup, type RestoreOptions, type RestoreResult } from '../restore/restore.js';
import { nextSegment, parseLsn } from './layout.js';
import { backupSegments } from './backup-postgres.js';
import { DEFAULT_STANZA, readStanza, stanzaHasSystem } from './stanza.js';
import { fetchWalBytes, isArchived, readControlSystemIdentifier } from './wal.js';
import { fsyncDir, writeDurably } from '../durable.js';
import { pidFileAlive } from '../pid-file.js';

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

/** Which cluster a restore_command fetches WAL for. */
export interface RestoreCommandScope {
  stanza: string;
  systemIdentifier: string;
}

export interface PostgresRestoreOptions extends Omit<RestoreOptions, 'relocate' | 'linkMap' | 'lastFiles' | 'beforeLast'> {
  target?: RecoveryTarget;
  /** Write `standby.signal` (build a standby) instead of `recovery.signal`. */
  standby?: boolean;
  /** The `restore_command` to write, e.g. `coffer --repo … wal-fetch %f %p`, or a function of the backup's stanza and system. */
  restoreCommand: string | ((scope: RestoreCommandScope) => string);
  /** Where to put tablespaces, by name or OID (default: their original locations). */
  tablespaceMap?: Readonly<Record<string, string>>;
  /** Links in the data directory (other than tablespaces), by path: restored as links to these directories instead of as directories. */
  linkMap?: Readonly<Record<string, string>>;
  /** Stanza to choose the backup from (default `main`; backups of format 1 repositories have none and are chosen by system identifier). */
  stanza?: string;
  /**
   * Keep the backup's archive settings. By default the restored cluster gets
   * `archive_mode = off`: a copy that promoted would otherwise push a new
   * timeline into the production stanza, which later restores to `latest`
   * would follow. Give it only when the restore replaces the original.
   */
  archive?: boolean;
}

export interface PostgresRestoreResult extends RestoreResult {
  /** The settings appended to postgresql.auto.conf. */
  recoverySettings: string;
}

const BEGIN = '# coffer restore: begin';
const END = '# coffer restore: end';

/** A restore marker, in the data directory and each tablespace directory a restore wrote. */
export const RESTORE_MARKER = '.coffer-restore';

function targetCount(t: RecoveryTarget): number {
  return [t.time, t.lsn, t.xid, t.name].filter((v) => v !== undefined).length + (t.immediate ? 1 : 0);
}

/**
 * A target time must say its zone: PostgreSQL would read a bare time in the
 * server's zone, which nobody restoring at 3 a.m. should have to know. An
 * offset, Z, or UTC/GMT — as a server logging in UTC writes its times
 * (`%m` in log_line_prefix: `2026-12-01 21:30:00.123 UTC`), so a time copied
 * from the log is taken as it is. Other zone names are ambiguous (CST).
 */
const ZONE = /(Z|[+-]\d{2}(:?\d{2})?| (UTC|GMT))$/i;

export function parseTargetTime(text: string, option = '--target-time'): number {
  const trimmed = text.trim();
  if (!ZONE.test(trimmed)) throw new InvalidArgumentError(option, `${text} has no time zone: add one (Z, +00, -05:00, UTC…) so it means the same on every server`);
  const iso = trimmed.replace(/ (UTC|GMT)$/i, 'Z').replace(' ', 'T').replace(/([+-]\d{2})$/, '$1:00').replace(/([+-]\d{2})(\d{2})$/, '$1:$2');
  const t = Date.parse(iso);
  if (Number.isNaN(t)) throw new InvalidArgumentError(option, `${text} is not a timestamp`);
  return t;
}

/** The full (epoch-qualified) transaction id a target names: an xid8 as given; a 32-bit xid in the epoch nearest the newest backup's. */
function fullXid(text: string, newestNextXid: bigint): bigint {
  if (!/^\d{1,20}$/.test(text)) throw new InvalidArgumentError('--target-xid', `${text} is not a transaction id`);
  const x = BigInt(text);
  if (x >= 2n ** 32n) return x;
  let full = (newestNextXid & ~0xffffffffn) | x;
  // More than half the xid space ahead of the newest backup: the previous epoch's xid of that number.
  if (full > newestNextXid + 2n ** 31n && full >= 2n ** 32n) full -= 2n ** 32n;
  return full;
}

/** Each timeline of `target`'s history and the LSN where it ended (the target's own: never). */
export async function timelineAncestry(repo: Repository, scope: RestoreCommandScope, target: number): Promise<Map<number, bigint>> {
  const out = new Map<number, bigint>([[target, 2n ** 64n]]);
  if (target === 1) return out;
  const name = `${target.toString(16).toUpperCase().padStart(8, '0')}.history`;
  const bytes = await fetchWalBytes(repo, scope, name);
  if (!bytes) throw new BackupNotFoundError(`timeline ${target}`, `${name} is not archived for stanza ${scope.stanza}`);
  for (const line of bytes.toString('utf8').split('\n')) {
    const m = /^\s*(\d+)\s+([0-9A-Fa-f]+\/[0-9A-Fa-f]+)/.exec(line);
    if (m) out.set(Number(m[1]), parseLsn(m[2]!));
  }
  return out;
}

/** The newest timeline whose history is archived, probing upwards from `from` as PostgreSQL does. */
async function latestTimeline(repo: Repository, scope: RestoreCommandScope, from: number): Promise<number> {
  let tli = from;
  for (;;) {
    const next = `${(tli + 1).toString(16).toUpperCase().padStart(8, '0')}.history`;
    if (!(await fetchWalBytes(repo, scope, next))) return tli;
    tli++;
  }
}

/**
 * The newest PostgreSQL backup of the stanza from which recovery can reach
 * `target`: consistent (stopped) before it, and on the target timeline's
 * history at a point before that timeline branched away.
 */
export async function chooseBackup(repo: Repository, target: RecoveryTarget = {}, stanza = DEFAULT_STANZA): Promise<BackupSummary> {
  const record = await readStanza(repo, stanza);
  const all = (await repo.listBackups()).filter(
    (b) => b.kind === 'postgres' && b.postgres && (b.stanza !== undefined ? b.stanza === stanza : !record || stanzaHasSystem(record, b.postgres.systemIdentifier)),
  );
  const newest = all[all.length - 1];
  let fits: (b: BackupSummary) => boolean = () => true;
  if (target.time !== undefined) {
    const t = parseTargetTime(target.time);
    fits = (b) => Date.parse(b.postgres!.stopTime) < t;
  } else if (target.lsn !== undefined) {
    const l = parseTargetLsn(target.lsn);
    fits = (b) => parseLsn(b.postgres!.stopLsn) <= l;
  } else if (target.xid !== undefined) {
    const x = fullXid(target.xid, newest ? BigInt(newest.postgres!.stopNextXid) : 0n);
    fits = (b) => BigInt(b.postgres!.stopNextXid) <= x;
  }
  const candidates = all.filter(fits);
  if (candidates.length === 0) throw new BackupNotFoundError(describeTarget(target), all.length ? 'no PostgreSQL backup of this stanza ended before this target' : `stanza ${stanza} holds no PostgreSQL backup`);
  const timeline = target.timeline ?? 'latest';
  if (timeline !== 'current' && !target.immediate) {
    const ancestry = new Map<string, Map<number, bigint>>();
    for (const b of candidates.reverse()) {
      const pg = b.postgres!;
      const scope = { stanza, systemIdentifier: pg.systemIdentifier };
      let lines = ancestry.get(pg.systemIdentifier);
      if (!lines) {
        const tli = timeline === 'latest' ? await latestTimeline(repo, scope, pg.timeline) : Number(timeline);
        ancestry.set(pg.systemIdentifier, (lines = await timelineAncestry(repo, scope, tli)));
      }
      const end = lines.get(pg.timeline);
      if (end !== undefined && parseLsn(pg.stopLsn) <= end) return b;
    }
    throw new BackupNotFoundError(describeTarget(target), `no backup lies on the history of timeline ${timeline}`);
  }
  return candidates[candidates.length - 1]!;
}

/**
 * The backup a restore means: a selector names one (id, prefix, label, key);
 * none or `latest` means the newest backup — for PostgreSQL, the newest of the
 * stanza that can reach the target (a repository holds several clusters, and
 * the newest backup overall may be another's). `postgres` says PostgreSQL
 * options were given.
 */
export async function backupToRestore(repo: Repository, selector: string | undefined, options: { target?: RecoveryTarget; stanza?: string; postgres?: boolean } = {}): Promise<string> {
  if (selector && selector !== 'latest') return repo.findBackupKey(selector);
  if (options.postgres) return (await chooseBackup(repo, options.target, options.stanza)).key;
  const newest = (await repo.listBackups()).pop();
  if (!newest) throw new BackupNotFoundError(selector ?? 'latest', 'the repository holds no backups');
  return newest.kind === 'files' ? newest.key : (await chooseBackup(repo, options.target, options.stanza)).key;
}

/**
 * A target past a backup's end needs WAL after it. When the segment after the
 * backup's last one is in the repository on no timeline of its line, the
 * target cannot be reached from this backup: it lies before the PITR window
 * (expire removed that WAL) or past the end of the archive. Refused here,
 * before anything is written, rather than by PostgreSQL at the end of
 * recovery ("recovery ended before configured recovery target was reached").
 */
async function requireWalAfter(repo: Repository, key: string, pg: NonNullable<BackupManifest['postgres']>, scope: { stanza: string; systemIdentifier: string }, target: RecoveryTarget): Promise<void> {
  const segments = backupSegments(pg.timeline, parseLsn(pg.startLsn), parseLsn(pg.stopLsn), pg.walSegmentSize);
  const last = segments[segments.length - 1];
  if (last === undefined) return;
  const next = nextSegment(last, pg.walSegmentSize).slice(8);
  // The line may have moved to a later timeline after the backup: follow the history files archived for it.
  for (let tli = pg.timeline; tli < pg.timeline + 64; tli++) {
    const hex = tli.toString(16).toUpperCase().padStart(8, '0');
    if (tli > pg.timeline && !(await isArchived(repo, scope, `${hex}.history`))) break;
    if ((await isArchived(repo, scope, hex + next)) || (await isArchived(repo, scope, `${hex}${next}.partial`))) return;
  }
  throw new BackupNotFoundError(
    describeTarget(target),
    `backup ${key.slice(-64, -52)} (stopped ${pg.stopTime}, LSN ${pg.stopLsn}) is the newest that ends before it, but the repository holds no WAL after that backup's end (${pg.timeline.toString(16).toUpperCase().padStart(8, '0')}${next} is not archived): the target is outside the PITR window (expire removed that WAL) or past the end of the archive; recover to the backup's end with --target immediate, or choose a target inside the window`,
  );
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

export function recoverySettings(restoreCommand: string, target: RecoveryTarget = {}, options: { archive?: boolean } = {}): string {
  if (targetCount(target) > 1) throw new InvalidArgumentError('recovery target', 'give at most one of time, LSN, xid, name and immediate');
  if (target.lsn !== undefined) parseTargetLsn(target.lsn);
  if (target.time !== undefined) parseTargetTime(target.time);
  const lines = [`restore_command = ${quote(restoreCommand)}`];
  if (!options.archive) lines.push(`archive_mode = 'off'`);
  if (target.time !== undefined) lines.push(`recovery_target_time = ${quote(target.time.trim())}`);
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

async function exists(p: string): Promise<boolean> {
  return (await open(p, 'r').then((fh) => fh.close().then(() => true), (e: NodeJS.ErrnoException) => e.code !== 'ENOENT'));
}

/** Whether `dir` holds a running (or crashed, pid reused) server: its postmaster.pid names a live process. */
function serverRunning(dir: string): Promise<boolean> {
  return pidFileAlive(join(dir, 'postmaster.pid'), true);
}

async function realOrSelf(p: string): Promise<string> {
  return realpath(p).catch(() => resolve(p));
}

/**
 * Refuses tablespace directories a restore must not write into: one a running
 * cluster's pg_tblspc points at, and a non-empty one that is neither an
 * earlier restore's (marker) nor, for a delta restore of the original data
 * directory, the very tablespace that data directory links to.
 */
async function checkTablespaceTargets(dir: string, manifest: BackupManifest, relocate: ReadonlyMap<string, string>, delta: boolean): Promise<void> {
  const pg = manifest.postgres!;
  const clusters = [resolve(dir), pg.dataDirectory];
  for (const [link, to] of relocate) {
    if (!link.startsWith('pg_tblspc/')) continue;
    const names = await readdir(to).catch(() => [] as string[]);
    if (names.length > 0 && !delta) throw new TargetNotEmptyError(to);
    const real = await realOrSelf(to);
    for (const c of clusters) {
      const points = await readlink(join(c, link)).catch(() => undefined);
      if (points !== undefined && (await realOrSelf(points)) === real && (await serverRunning(c))) {
        throw new TargetInUseError(to, `the running cluster in ${c} uses it as tablespace ${link.slice('pg_tblspc/'.length)}: map the tablespace elsewhere with --tablespace-map`);
      }
    }
    if (names.length === 0 || names.includes(RESTORE_MARKER)) continue;
    const ownLink = await readlink(join(dir, link)).catch(() => undefined);
    const ownsIt = ownLink !== undefined && (await realOrSelf(ownLink)) === real && (await readControlSystemIdentifier(dir)) === pg.systemIdentifier;
    if (!ownsIt) throw new TargetNotEmptyError(to);
  }
}

/**
 * A delta restore removes whatever the backup does not hold: it goes only
 * into an empty directory, an earlier restore's (its marker), or a data
 * directory of this stanza's cluster (in-place recovery of the original).
 */
async function checkDeltaTarget(dir: string, stanza: string, systemIdentifier: string, record: Awaited<ReturnType<typeof readStanza>>): Promise<void> {
  const names = await readdir(dir).catch(() => [] as string[]);
  if (names.length === 0) return;
  if (names.includes(RESTORE_MARKER)) {
    const marker = await readFile(join(dir, RESTORE_MARKER), 'utf8').then((t) => JSON.parse(t) as { stanza?: string }, () => undefined);
    if (marker?.stanza === stanza) return;
    throw new TargetNotEmptyError(dir, `it holds a restore of stanza ${marker?.stanza ?? '(unreadable marker)'}, not of ${stanza}`);
  }
  const sysid = await readControlSystemIdentifier(dir);
  if (sysid !== undefined && (sysid === systemIdentifier || (record !== undefined && stanzaHasSystem(record, sysid)))) return;
  throw new TargetNotEmptyError(dir, sysid === undefined ? 'it is neither an earlier restore nor a PostgreSQL data directory, and --delta would remove everything the backup does not hold (pass --force to restore over it anyway; --dry-run lists what it would remove)' : `it is the data directory of system ${sysid}, not of stanza ${stanza}'s cluster`);
}

/** Restores `selector` (or the backup chosen for the target) into `dir`, ready to recover. */
export async function restorePostgres(repo: Repository, selector: string | LoadedBackup | undefined, dir: string, options: PostgresRestoreOptions): Promise<PostgresRestoreResult> {
  const stanza = options.stanza ?? DEFAULT_STANZA;
  // Settings are checked before anything is read or written: a malformed target fails at once.
  recoverySettings('', options.target, options);
  const key = typeof selector === 'object' ? selector.key : selector ? await repo.findBackupKey(selector) : (await chooseBackup(repo, options.target, stanza)).key;
  if (await exists(join(dir, 'postmaster.pid'))) throw new TargetInUseError(dir, 'postmaster.pid is present: stop the server (and remove a stale postmaster.pid) first');
  // The manifest is read once here and handed to the restore.
  const manifest = typeof selector === 'object' ? selector.manifest : await repo.readManifest(key);
  if (!manifest.postgres) throw new InvalidArgumentError('backup', `${key} is a ${manifest.kind} backup, not a PostgreSQL one`);
  const pg = manifest.postgres;
  if (manifest.stanza !== undefined && manifest.stanza !== stanza) throw new StanzaMismatchError(stanza, `backup ${key} belongs to stanza ${manifest.stanza}`);
  const scope = { stanza, systemIdentifier: pg.systemIdentifier };
  if (!options.standby && !options.target?.immediate && (options.target?.time ?? options.target?.lsn ?? options.target?.xid ?? options.target?.name) !== undefined) {
    await requireWalAfter(repo, key, pg, scope, options.target!);
  }
  const settings = recoverySettings(typeof options.restoreCommand === 'string' ? options.restoreCommand : options.restoreCommand(scope), options.target, options);

  const map = { ...options.tablespaceMap };
  const relocate = new Map<string, string>();
  for (const t of pg.tablespaces) {
    const to = map[t.name] ?? map[t.oid] ?? t.location;
    delete map[t.name];
    delete map[t.oid];
    if (!isAbsolute(to)) throw new InvalidArgumentError('--tablespace-map', `${t.name}=${to}: the directory must be an absolute path`);
    relocate.set(`pg_tblspc/${t.oid}`, to);
  }
  const unknown = Object.keys(map);
  if (unknown.length) throw new InvalidArgumentError('--tablespace-map', `the backup has no tablespace ${unknown.join(', ')} (it has: ${pg.tablespaces.map((t) => `${t.name} (${t.oid})`).join(', ') || 'none'})`);

  // Links other than tablespaces never point the restored cluster at the source's directories.
  const links = new Map<string, string>();
  const linkWanted = { ...options.linkMap };
  for (const e of manifest.entries) {
    if (e.type !== 'symlink' || e.path.startsWith('pg_tblspc/')) continue;
    const to = linkWanted[e.path];
    delete linkWanted[e.path];
    if (to !== undefined && !isAbsolute(to)) throw new InvalidArgumentError('--link-map', `${e.path}=${to}: the directory must be an absolute path`);
    links.set(e.path, to ?? 'dir');
  }
  const unknownLinks = Object.keys(linkWanted);
  if (unknownLinks.length) throw new InvalidArgumentError('--link-map', `the backup has no link ${unknownLinks.join(', ')} (it has: ${[...links.keys()].join(', ') || 'none'})`);
  await checkTablespaceTargets(dir, manifest, relocate, !!options.delta);
  if (options.delta && !options.force) await checkDeltaTarget(dir, stanza, pg.systemIdentifier, await readStanza(repo, stanza));

  if (options.delta && !options.dryRun) {
    // Whatever happens next, this directory no longer starts as the cluster it was until the restore completes.
    for (const f of ['global/pg_control', 'backup_label', 'tablespace_map']) await rm(join(dir, f), { force: true });
    if (await exists(join(dir, 'global'))) await fsyncDir(join(dir, 'global'));
    if (await exists(dir)) await fsyncDir(dir);
  }

  const signal = options.standby ? 'standby.signal' : 'recovery.signal';
  const marker = JSON.stringify({ repository: repo.config.repositoryId, stanza, systemIdentifier: pg.systemIdentifier, backup: key, at: new Date().toISOString() }) + '\n';
  const root = manifest.entries.find((e) => e.path === '.');
  const owner = root && process.getuid?.() === 0 ? { uid: root.uid, gid: root.gid } : undefined;
  const writeRecoveryFiles = async (): Promise<void> => {
    await mkdir(join(dir, 'pg_wal', 'archive_status'), { recursive: true, mode: 0o700 });
    await writeDurably(join(dir, 'backup_label'), pg.backupLabel);
    // No tablespace_map: the pg_tblspc links are already made, to wherever the tablespaces went.
    const autoConf = join(dir, 'postgresql.auto.conf');
    const before = await readFile(autoConf, 'utf8').catch(() => '# Do not edit this file manually!\n');
    const kept = before.replace(new RegExp(`${BEGIN}[\\s\\S]*?${END}\\n?`, 'g'), '');
    await writeDurably(autoConf, `${kept}${kept.endsWith('\n') ? '' : '\n'}${BEGIN}\n${settings}${END}\n`);
    await rm(join(dir, options.standby ? 'recovery.signal' : 'standby.signal'), { force: true });
    await writeDurably(join(dir, signal), '');
    // Files we wrote belong to the cluster's owner, like the rest of the data directory.
    if (owner) {
      for (const f of ['backup_label', 'postgresql.auto.conf', signal, RESTORE_MARKER, 'pg_wal', 'pg_wal/archive_status']) await chown(join(dir, f), owner.uid, owner.gid);
      for (const to of relocate.values()) await chown(join(to, RESTORE_MARKER), owner.uid, owner.gid);
    }
    await fsyncDir(join(dir, 'pg_wal'));
    await fsyncDir(dir);
  };

  const result = await restoreBackup(repo, { key, manifest }, dir, {
    ...options,
    relocate,
    linkMap: links,
    lastFiles: new Set(['global/pg_control']),
    beforeLast: writeRecoveryFiles,
    marker: { name: RESTORE_MARKER, content: marker },
  });
  return { ...result, recoverySettings: settings };
}
