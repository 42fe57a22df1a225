/**
 * Proving one PostgreSQL backup recoverable: restore it into a sandbox,
 * recover with WAL from the repository to a target (default: the end of the
 * archive), start the server in a network of its own, check what came back
 * (the point recovery reached, amcheck on every database, smoke queries,
 * page checksums once stopped), and remove everything — also when a step
 * fails. Each phase is timed; plan + restore + start + replay is this
 * backup's measured recovery time at its size.
 *
 * What fails because of the backup (a damaged pack, missing WAL, a server
 * that will not recover, a check) makes a failed report, not an exception;
 * what fails because of this machine (no namespace, no server binaries of
 * the backup's version) throws SandboxUnavailableError before anything runs.
 */
import { access, chown, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  chooseBackup,
  CofferError,
  DEFAULT_STANZA,
  InvalidArgumentError,
  parseLsn,
  parseTargetTime,
  recordVerification,
  restorePostgres,
  SandboxUnavailableError,
  verifyWalChain,
  type RecoveryTarget,
  type Repository,
  type WalChainReport,
} from '@coffer/engine';
import { amcheckAll } from './amcheck.js';
import { isolationProblem } from './isolation.js';
import { scanPageChecksums } from './page-scan.js';
import { findPostgresFor, PostgresSandbox, runAsServerUser, serverUser, type PostgresInstall } from './postgres-sandbox.js';
import { makeSandbox } from './sandbox-removal.js';
import { runSmoke, type SmokeQuery } from './smoke.js';
import { WalSocketServer } from './wal-socket.js';

/** The recovery target a verification may aim at: a point, not an action (the sandbox always promotes). */
export type VerifyTarget = Pick<RecoveryTarget, 'time' | 'lsn' | 'xid' | 'name' | 'timeline' | 'inclusive'>;

export interface PostgresVerifyOptions {
  stanza?: string;
  /** Where recovery stops (default: the end of the archive). */
  target?: VerifyTarget;
  /** The restore_command the sandbox runs, given the Unix socket that serves WAL (the CLI: `coffer wal-fetch --socket <path> %f %p`). */
  restoreCommand: (socketPath: string) => string;
  /** Server binaries (default: those of the backup's major version, found on this machine). */
  install?: PostgresInstall;
  /** Parent directory of the sandbox (default: the OS temp directory); its path must be short enough for a Unix socket. */
  sandboxParent?: string;
  smoke?: readonly SmokeQuery[];
  /** The newest replayed commit must be at most this old, at the target time or (end of archive) when the run started. */
  rpoSeconds?: number;
  /** Server settings for the sandbox, over the restored configuration and Coffer's sandbox settings. */
  settings?: Readonly<Record<string, string | number>>;
  /** Keep the sandbox directory (the server is stopped either way). */
  keep?: boolean;
  /** Write a verification record (default true): retention keeps the newest backup that passed. */
  record?: boolean;
  /** Pack requests in flight while restoring. */
  concurrency?: number;
  /** How long recovery may take before it counts as failed (default six hours). */
  recoveryTimeoutSeconds?: number;
  /** The WAL chain, when the caller verified it already (one run, several backups). */
  walChain?: WalChainReport;
  /** Told the sandbox directory as soon as it exists (a caller that handles signals removes it with `removeSandbox`). */
  onSandbox?: (dir: string) => void;
  /** Told each phase as it begins. */
  onPhase?: (phase: VerifyPhaseName) => void;
}

export type VerifyPhaseName = 'plan' | 'restore' | 'start' | 'replay' | 'checks' | 'stop';

export interface VerifyPhase {
  name: VerifyPhaseName;
  seconds: number;
}

export interface VerifyCheck {
  name: 'recovery' | 'recovered-point' | 'amcheck' | 'page-checksums' | 'smoke';
  ok: boolean;
  seconds: number;
  summary: string;
  failures: string[];
}

export interface PostgresVerifyReport {
  ok: boolean;
  backup: string;
  label: string;
  stanza: string;
  server: string;
  /** "end of archive", or the target given. */
  target: string;
  sandbox: string;
  phases: VerifyPhase[];
  /** plan + restore + start + replay: how long recovering this backup took, at this size. */
  rtoSeconds: number;
  restored: { files: number; bytes: number; bytesFetched: number; bytesPerSecond: number };
  /** WAL the sandbox replayed, served from the repository. */
  wal: { files: number; bytes: number };
  /** Where recovery ended. */
  recovered?: { lsn: string; lastCommit?: string; timeline: number };
  checks: VerifyCheck[];
  /** Every failure, each naming the object, segment, relation or query at fault. */
  failures: string[];
  /** The verification record written, when one was. */
  recorded?: string;
}

const SANDBOX_HBA = 'local all all trust\nhost all all 127.0.0.1/32 trust\n';

/**
 * Settings every sandbox runs with, over whatever the restored cluster had:
 * nothing archives, nothing replicates or subscribes, no standby is waited
 * for, logs go to the sandbox, only our own authentication applies.
 */
function sandboxSettings(sandbox: string): Record<string, string | number> {
  return {
    listen_addresses: '127.0.0.1',
    unix_socket_directories: sandbox,
    unix_socket_group: '',
    unix_socket_permissions: '0700',
    hba_file: join(sandbox, 'pg_hba.conf'),
    ident_file: join(sandbox, 'pg_ident.conf'),
    archive_mode: 'off',
    primary_conninfo: '',
    primary_slot_name: '',
    synchronous_standby_names: '',
    max_logical_replication_workers: 0,
    max_sync_workers_per_subscription: 0,
    hot_standby: 'on',
    ssl: 'off',
    logging_collector: 'off',
    log_destination: 'stderr',
    shared_buffers: '256MB',
    huge_pages: 'off',
  };
}

function describeTarget(t: VerifyTarget | undefined): string {
  if (t?.time !== undefined) return `time ${t.time}`;
  if (t?.lsn !== undefined) return `LSN ${t.lsn}`;
  if (t?.xid !== undefined) return `xid ${t.xid}`;
  if (t?.name !== undefined) return `restore point ${t.name}`;
  return 'end of archive';
}

export async function verifyPostgresBackup(repo: Repository, selector: string | undefined, options: PostgresVerifyOptions): Promise<PostgresVerifyReport> {
  const stanza = options.stanza ?? DEFAULT_STANZA;
  const runStarted = new Date();
  const phases: VerifyPhase[] = [];
  let mark = performance.now();
  let current: VerifyPhaseName = 'plan';
  options.onPhase?.('plan');
  const next = (name: VerifyPhaseName) => {
    const now = performance.now();
    phases.push({ name: current, seconds: (now - mark) / 1000 });
    mark = now;
    current = name;
    options.onPhase?.(name);
  };

  // Plan: which backup, which binaries, whether this machine can isolate a server at all.
  const key = selector ? await repo.findBackupKey(selector) : (await chooseBackup(repo, options.target ?? {}, stanza)).key;
  const manifest = await repo.readManifest(key);
  const pg = manifest.postgres;
  if (!pg) throw new InvalidArgumentError('backup', `${key} is a ${manifest.kind} backup: verify proves PostgreSQL backups (drill re-reads files backups)`);
  const major = Math.floor(pg.versionNum / 10000);
  const install = options.install ?? findPostgresFor(major);
  if (!install) throw new SandboxUnavailableError(`backup ${manifest.label} is of PostgreSQL ${major}, and no server binaries of that version are installed (Debian: postgresql-${major}); give them with --pg-bin`);
  if (install.major !== major) throw new SandboxUnavailableError(`backup ${manifest.label} is of PostgreSQL ${major}, but the server binaries given are of ${install.major}`);
  const isolation = isolationProblem();
  if (isolation) throw new SandboxUnavailableError(isolation);
  if (options.target?.time !== undefined) parseTargetTime(options.target.time);
  const chain = options.walChain ?? (await verifyWalChain(repo, { stanza }));

  // Named for this process: a run killed outright leaves it to the next run to stop and remove.
  const sandbox = await makeSandbox(options.sandboxParent ?? tmpdir());
  options.onSandbox?.(sandbox);
  const socketPath = join(sandbox, 'wal.sock');
  const report: PostgresVerifyReport = {
    ok: false,
    backup: key,
    label: manifest.label,
    stanza,
    server: install.label,
    target: describeTarget(options.target),
    sandbox,
    phases,
    rtoSeconds: 0,
    restored: { files: 0, bytes: 0, bytesFetched: 0, bytesPerSecond: 0 },
    wal: { files: 0, bytes: 0 },
    checks: [],
    failures: [],
  };
  const fail = (check: VerifyCheck) => {
    report.checks.push(check);
    for (const f of check.failures) report.failures.push(`${check.name}: ${f}`);
  };
  let wal: WalSocketServer | undefined;
  let cluster: PostgresSandbox | undefined;
  try {
    // Socket paths are limited to ~107 bytes; PostgreSQL's own is longer than ours.
    if (Buffer.byteLength(join(sandbox, '.s.PGSQL.65535.lock')) > 100) throw new InvalidArgumentError('--sandbox', `${sandbox} is too long a path for a Unix socket: choose a shorter parent directory`);
    const user = serverUser();
    if (user) await chown(sandbox, user.uid, user.gid);
    // Recovery "to the end of the archive" ends at the end the chain was read with, though the source archives on.
    wal = await WalSocketServer.listen(repo, { stanza, systemIdentifier: pg.systemIdentifier }, socketPath, pg.walSegmentSize, chain.newest ? { through: chain.newest } : {});
    const tablespaceMap = Object.fromEntries(pg.tablespaces.map((t) => [t.oid, join(sandbox, 'tablespaces', t.oid)]));
    if (pg.tablespaces.length > 0) {
      // The server must traverse it to reach each relocated tablespace (the restore creates the rest with their owners).
      await mkdir(join(sandbox, 'tablespaces'), { mode: 0o700 });
      if (user) await chown(join(sandbox, 'tablespaces'), user.uid, user.gid);
    }
    const data = join(sandbox, 'data');
    next('restore');
    const t0 = performance.now();
    let restored;
    try {
      restored = await restorePostgres(repo, { key, manifest }, data, {
        stanza,
        target: { ...options.target, action: 'promote' },
        tablespaceMap,
        restoreCommand: options.restoreCommand(socketPath),
        ...(options.concurrency ? { concurrency: options.concurrency } : {}),
      });
    } catch (e) {
      if (!(e instanceof CofferError)) throw e;
      fail({ name: 'recovery', ok: false, seconds: (performance.now() - t0) / 1000, summary: 'the backup could not be restored', failures: [`restore: ${e.message}`] });
      return report;
    }
    const restoreSeconds = (performance.now() - t0) / 1000;
    report.restored = { files: restored.files, bytes: restored.bytes, bytesFetched: restored.bytesFetched, bytesPerSecond: restoreSeconds > 0 ? restored.bytes / restoreSeconds : 0 };

    // A cluster whose configuration lived outside its data directory (Debian's /etc/postgresql) comes back without one.
    await prepareConfiguration(sandbox, data, user);
    next('start');
    cluster = await PostgresSandbox.adopt(install, data, { isolated: true });
    const timeout = options.recoveryTimeoutSeconds ?? 6 * 3600;
    try {
      await cluster.start({ ...sandboxSettings(sandbox), ...options.settings }, timeout);
      next('replay');
      await cluster.waitPromoted(timeout * 1000);
    } catch (e) {
      report.wal = { files: wal.stats.files, bytes: wal.stats.bytes };
      fail({ name: 'recovery', ok: false, seconds: 0, summary: 'the restored cluster did not recover', failures: await recoveryFailures(cluster, wal, chain, e as Error) });
      return report;
    }
    report.wal = { files: wal.stats.files, bytes: wal.stats.bytes };
    next('checks');
    report.checks.push({ name: 'recovery', ok: true, seconds: phases.filter((p) => p.name === 'start').reduce((n, p) => n + p.seconds, 0), summary: `recovered and promoted, ${wal.stats.files} WAL files replayed`, failures: [] });

    const admin = await cluster.connect();
    fail(await timed('recovered-point', async () => recoveredPoint(admin, report, chain, options, runStarted, pg.walSegmentSize)));
    fail(
      await timed('amcheck', async () => {
        const r = await amcheckAll(admin, (db) => cluster!.connectTo(db));
        return { ok: r.failures.length === 0, summary: `${r.databases} databases, ${r.relations} tables, ${r.indexes} B-tree indexes (heapallindexed)`, failures: r.failures };
      }),
    );
    if (options.smoke && options.smoke.length > 0) {
      fail(
        await timed('smoke', async () => {
          const r = await runSmoke(options.smoke!, (db) => cluster!.connectTo(db));
          return { ok: r.failures.length === 0, summary: `${r.passed} of ${options.smoke!.length} queries passed`, failures: r.failures };
        }),
      );
    }
    next('stop');
    await cluster.stop('fast');
    cluster = undefined;
    fail(
      await timed('page-checksums', async () => {
        if (!pg.dataChecksums) return { ok: true, summary: 'the cluster has no data checksums (initdb --data-checksums); amcheck covers it', failures: [] };
        return pageChecksums(install, data);
      }),
    );
  } finally {
    if (cluster) await cluster.stop('immediate').catch(() => undefined);
    if (wal) await wal.close().catch(() => undefined);
    if (!options.keep) await rm(sandbox, { recursive: true, force: true });
    const now = performance.now();
    phases.push({ name: current, seconds: (now - mark) / 1000 });
    report.rtoSeconds = phases.filter((p) => p.name !== 'checks' && p.name !== 'stop').reduce((n, p) => n + p.seconds, 0);
    report.ok = report.failures.length === 0 && report.checks.length > 0;
  }
  if (options.record !== false) {
    // A repository this run may not write to (read-only credentials) still gets its report.
    report.recorded = await recordVerification(repo, {
      backup: key,
      at: new Date().toISOString(),
      ok: report.ok,
      checks: report.checks.map((c) => c.name),
      ...(report.ok ? {} : { problems: report.failures }),
    }).catch(() => undefined);
    if (!report.recorded) delete report.recorded;
  }
  return report;
}

async function timed(name: VerifyCheck['name'], run: () => Promise<Omit<VerifyCheck, 'name' | 'seconds'>>): Promise<VerifyCheck> {
  const t0 = performance.now();
  try {
    return { name, ...(await run()), seconds: (performance.now() - t0) / 1000 };
  } catch (e) {
    return { name, ok: false, summary: 'could not run', failures: [(e as Error).message], seconds: (performance.now() - t0) / 1000 };
  }
}

async function prepareConfiguration(sandbox: string, data: string, user: { uid: number; gid: number } | undefined): Promise<void> {
  const conf = join(data, 'postgresql.conf');
  const hasConf = await access(conf).then(
    () => true,
    () => false,
  );
  const files: [string, string][] = [
    [join(sandbox, 'pg_hba.conf'), SANDBOX_HBA],
    [join(sandbox, 'pg_ident.conf'), ''],
  ];
  if (!hasConf) files.push([conf, '# written by coffer verify: the backed-up cluster kept its configuration outside its data directory\n']);
  for (const [path, text] of files) {
    await writeFile(path, text, { mode: 0o600 });
    if (user) await chown(path, user.uid, user.gid);
  }
}

/** Why recovery did not finish: the WAL fetch that failed (naming its object), the chain's gaps, the server's own last words. */
async function recoveryFailures(cluster: PostgresSandbox, wal: WalSocketServer, chain: WalChainReport, e: Error): Promise<string[]> {
  const out: string[] = [];
  if (wal.stats.failure) out.push(`WAL ${wal.stats.failure}`);
  for (const g of chain.gaps) if (!g.expected) out.push(`WAL ${g.from}…${g.to} (${g.segments} segments) is missing from the repository`);
  const log = await cluster.log();
  const last = log
    .split('\n')
    .filter((l) => /\b(FATAL|PANIC|ERROR):/.test(l))
    .slice(-5);
  out.push(...(last.length > 0 ? last.map((l) => `server: ${l.trim()}`) : [`server: ${e.message.split('\n')[0]}`]));
  return out;
}

async function recoveredPoint(
  admin: import('pg').Client,
  report: PostgresVerifyReport,
  chain: WalChainReport,
  options: PostgresVerifyOptions,
  runStarted: Date,
  segmentBytes: number,
): Promise<Omit<VerifyCheck, 'name' | 'seconds'>> {
  const [row] = (await admin.query<{ lsn: string; ts: Date | null; tli: number }>(`SELECT pg_last_wal_replay_lsn()::text AS lsn, pg_last_xact_replay_timestamp() AS ts, (SELECT timeline_id FROM pg_control_checkpoint()) AS tli`)).rows;
  if (!row) return { ok: false, summary: 'no answer', failures: ['pg_last_wal_replay_lsn() returned nothing'] };
  report.recovered = { lsn: row.lsn, timeline: row.tli, ...(row.ts ? { lastCommit: row.ts.toISOString() } : {}) };
  const failures: string[] = [];
  const target = options.target;
  const replayed = parseLsn(row.lsn);
  if (!target || describeTarget(target) === 'end of archive') {
    // A backup older than the PITR window recovers up to the WAL retention removed, as promised; the others to the newest segment.
    const mine = chain.backups.find((b) => b.backup === report.backup);
    const expectedEnd = mine?.state === 'limited' && chain.gaps.some((g) => g.expected && g.limits.includes(report.backup)) ? mine.reachesTo : chain.newest;
    if (expectedEnd) {
      const endStart = (BigInt(parseInt(expectedEnd.slice(8, 16), 16)) * BigInt(Math.floor(0x100000000 / segmentBytes)) + BigInt(parseInt(expectedEnd.slice(16, 24), 16))) * BigInt(segmentBytes);
      if (replayed < endStart) {
        const gaps = chain.gaps.map((g) => `${g.from}…${g.to}`).join(', ');
        failures.push(`recovery ended at ${row.lsn}, before ${expectedEnd === chain.newest ? 'the newest archived segment' : 'the last segment before the WAL retention removed'} ${expectedEnd}${gaps ? ` (missing: ${gaps})` : ''}`);
      }
    }
  } else if (target.time !== undefined && row.ts && row.ts.getTime() > parseTargetTime(target.time)) {
    failures.push(`the last replayed commit (${row.ts.toISOString()}) is after the target ${target.time}`);
  }
  if (options.rpoSeconds !== undefined) {
    const reference = target?.time !== undefined ? parseTargetTime(target.time) : runStarted.getTime();
    if (!row.ts) failures.push('no transaction was replayed, so the RPO cannot be shown');
    else if (reference - row.ts.getTime() > options.rpoSeconds * 1000) failures.push(`the last replayed commit (${row.ts.toISOString()}) is ${((reference - row.ts.getTime()) / 1000).toFixed(0)} s before ${target?.time ?? 'the run'}, more than the RPO of ${options.rpoSeconds} s`);
  }
  return { ok: failures.length === 0, summary: `replayed to ${row.lsn} on timeline ${row.tli}${row.ts ? `, last commit ${row.ts.toISOString()}` : ''}`, failures };
}

async function pageChecksums(install: PostgresInstall, data: string): Promise<Omit<VerifyCheck, 'name' | 'seconds'>> {
  const tool = join(install.bin, 'pg_checksums');
  const has = await access(tool).then(
    () => true,
    () => false,
  );
  if (has) {
    const r = await runAsServerUser(tool, ['--check', '-D', data]);
    const bad = r.stderr
      .split('\n')
      .filter((l) => /checksum verification failed/.test(l))
      .map((l) => l.replace(/^pg_checksums: error: /, '').trim());
    const scanned = /Blocks scanned:\s+(\d+)/.exec(r.stdout)?.[1];
    if (r.status === 0) return { ok: true, summary: `pg_checksums: ${scanned ?? '?'} blocks, none bad`, failures: [] };
    return { ok: false, summary: `pg_checksums exited ${r.status}`, failures: bad.length > 0 ? bad : [r.stderr.trim() || `pg_checksums exited ${r.status}`] };
  }
  const r = await scanPageChecksums(data);
  return { ok: r.failures.length === 0, summary: `${r.pages} pages in ${r.files} relation files (Coffer's reader)`, failures: r.failures };
}

