/**
 * The tools under comparison, each behind one interface: set up a
 * repository, back up a PostgreSQL cluster or a directory, archive a WAL
 * segment, restore the latest backup, and report what the repository holds.
 * Every tool encrypts and compresses (its usual zstd where it has one), so
 * stored bytes compare like with like.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chown, copyFile, mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { LocalKeyProvider } from '@coffer/engine';
import { serverUser, type PostgresSandbox } from '@coffer/verify';
import { run, treeBytes, versionOf, type StepFigures } from './proc.js';

export type Source = { kind: 'postgres'; cluster: PostgresSandbox } | { kind: 'files'; dir: string };
export type SourceKind = Source['kind'] | 'wal';

export interface Tool {
  readonly name: string;
  readonly version: string;
  /** The settings it runs with, for the report. */
  readonly settings: string;
  handles(kind: SourceKind): boolean;
  /** Creates an empty repository in `dir` (which the tool owns from then on). */
  init(dir: string, source: Source): Promise<void>;
  backup(source: Source): Promise<StepFigures>;
  /** Archives WAL files: one archive_command call per file where the tool has one, else one backup of them all. */
  walPush(segments: string[]): Promise<StepFigures>;
  /** Fetches archived WAL files (names) as PostgreSQL's recovery calls restore_command: one call per file, in order (tools that have one). */
  walFetch?(names: string[]): Promise<StepFigures>;
  /** Restores the latest backup into `to` (absent or empty). */
  restore(to: string, source: Source): Promise<StepFigures>;
  storedBytes(): Promise<number>;
  /** Proves the latest PostgreSQL backup recoverable, with the WAL archived in `archiveDir` (Coffer only: no other tool starts what it restored). */
  verify?(archiveDir: string): Promise<VerifyFigures>;
}

/** `coffer verify` on a workload's latest backup: the whole run, and its phases as its report gives them. */
export interface VerifyFigures extends StepFigures {
  ok: boolean;
  rtoS: number;
  phases: Record<string, number>;
  checks: Record<string, number>;
  readDataS: number;
  bytesRead: number;
  walFiles: number;
}

export interface MissingTool {
  name: string;
  missing: string;
}

const PASSWORD = 'benchmark passphrase, not a secret';
const COFFER_BIN = fileURLToPath(new URL('../../../packages/cli/bin/coffer.js', import.meta.url));

/** pg_wal's segments and the server's pid file are not part of a base backup's data for the file-level tools either. */
const dataExcludes = (data: string) => [`${data}/pg_wal/*`, `${data}/postmaster.pid`];

/** One command per file, as archive_command runs: total time, largest peak RSS. */
async function eachFile(files: string[], push: (f: string) => Promise<StepFigures>): Promise<StepFigures> {
  let ms = 0;
  let maxRssMiB: number | undefined;
  for (const f of files) {
    const r = await push(f);
    ms += r.ms;
    if (r.maxRssMiB !== undefined) maxRssMiB = Math.max(maxRssMiB ?? 0, r.maxRssMiB);
  }
  return { ms, maxRssMiB };
}

/**
 * Feeds WAL files to an archive_command the way PostgreSQL's archiver does:
 * the files sit in a pg_wal of their own with a `.ready` note each in
 * archive_status/, the command is called for one file at a time, oldest
 * first, and each success turns its `.ready` into `.done`. So a tool that
 * archives ahead (Coffer's archiver, pgBackRest's archive-async) sees the
 * backlog it would see on a server. The staged pg_wal sits in a data
 * directory of its own with a copy of the cluster's `global/pg_control`, as on
 * a server: the tools read the cluster's identity there (history and
 * backup-label files name none themselves). Putting the files in place is not
 * timed; the `.ready` notes appear together just before the first call, so
 * nothing already running gets a head start.
 */
async function archiveLikePostgres(files: string[], walDir: string, pgdata: string, push: (f: string) => Promise<StepFigures>): Promise<StepFigures> {
  await rm(walDir, { recursive: true, force: true });
  await ownedByServer(join(walDir, 'archive_status'));
  await ownedByServer(walDir);
  const user = serverUser();
  const control = join(dirname(walDir), 'global', 'pg_control');
  await ownedByServer(dirname(control));
  await copyFile(join(pgdata, 'global', 'pg_control'), control);
  if (user) await chown(control, user.uid, user.gid);
  const sources = [...files].sort((a, b) => basename(a).localeCompare(basename(b)));
  const staged = sources.map((f) => join(walDir, basename(f)));
  for (const [i, f] of staged.entries()) {
    await copyFile(sources[i]!, f);
    if (user) await chown(f, user.uid, user.gid);
  }
  syncAll();
  for (const f of staged) {
    await writeFile(join(walDir, 'archive_status', `${basename(f)}.ready`), '');
    if (user) await chown(join(walDir, 'archive_status', `${basename(f)}.ready`), user.uid, user.gid);
  }
  const callsMs: number[] = [];
  let maxRssMiB: number | undefined;
  for (const f of staged) {
    const r = await push(f);
    callsMs.push(r.ms);
    if (r.maxRssMiB !== undefined) maxRssMiB = Math.max(maxRssMiB ?? 0, r.maxRssMiB);
    await rename(join(walDir, 'archive_status', `${basename(f)}.ready`), join(walDir, 'archive_status', `${basename(f)}.done`));
  }
  return { ms: callsMs.reduce((a, b) => a + b, 0), maxRssMiB, callsMs };
}

/**
 * Fetches WAL files the way recovery calls restore_command: one call per
 * file, oldest first, each into `pg_wal/RECOVERYXLOG` of a data directory
 * whose `global/pg_control` is the cluster's (which the tools read), the file
 * taken away before the next call as PostgreSQL does once it has replayed it.
 */
async function fetchLikePostgres(names: string[], walDir: string, pgControl: string, fetch: (name: string, dest: string) => Promise<StepFigures>): Promise<StepFigures> {
  await rm(walDir, { recursive: true, force: true });
  await ownedByServer(walDir);
  await ownedByServer(join(dirname(walDir), 'global'));
  const control = join(dirname(walDir), 'global', 'pg_control');
  await copyFile(pgControl, control);
  const user = serverUser();
  if (user) await chown(control, user.uid, user.gid);
  syncAll();
  const callsMs: number[] = [];
  let maxRssMiB: number | undefined;
  const dest = join(walDir, 'RECOVERYXLOG');
  for (const n of [...names].sort()) {
    const r = await fetch(n, dest);
    callsMs.push(r.ms);
    if (r.maxRssMiB !== undefined) maxRssMiB = Math.max(maxRssMiB ?? 0, r.maxRssMiB);
    await rm(dest);
  }
  return { ms: callsMs.reduce((a, b) => a + b, 0), maxRssMiB, callsMs };
}

function syncAll(): void {
  spawnSync('sync');
}

async function ownedByServer(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true });
  const user = serverUser();
  if (user) await chown(dir, user.uid, user.gid);
}

/** The name the report gives a baseline Coffer (another revision run beside this one: `--baseline`). */
export const BASELINE_PREFIX = 'Coffer baseline';

class Coffer implements Tool {
  readonly name: string;
  readonly version: string;
  readonly settings = 'zstd 3, AES-256-GCM, relation files in 8 KiB pages, FastCDC 64 KiB otherwise, workers per core';
  private repo = '';
  private pgdata = '';
  private env: Record<string, string> = {};
  /** Revisions from before `--no-archive-check` never checked the archive at backup. */
  private readonly archiveCheckFlag: string[];
  constructor(
    version: string,
    private readonly bin = COFFER_BIN,
    name = 'Coffer',
  ) {
    this.version = version;
    this.name = name;
    const help = spawnSync(process.execPath, [bin, 'backup', '--help'], { encoding: 'utf8' }).stdout ?? '';
    this.archiveCheckFlag = help.includes('--no-archive-check') ? ['--no-archive-check'] : [];
  }
  handles(): boolean {
    return true;
  }
  private coffer(args: string[], env: Record<string, string> = {}, cwd?: string) {
    return run(process.execPath, [this.bin, '--repo', this.repo, '--quiet', ...args], { env: { ...this.env, ...env }, ...(cwd ? { cwd } : {}) });
  }
  /**
   * `coffer` as an installed host runs it — as archive_command = 'coffer
   * wal-push %p' calls it: the shell script beside the entry point, which
   * confirms a call from the archiver's note without starting Node (a
   * revision from before it had none: then the entry point itself).
   */
  private command(args: string[], cwd?: string) {
    const script = join(dirname(this.bin), 'coffer');
    if (!existsSync(script)) return this.coffer(args, {}, cwd);
    return run(script, ['--repo', this.repo, '--quiet', ...args], { env: { ...this.env, COFFER_NODE: process.execPath }, ...(cwd ? { cwd } : {}) });
  }
  async init(dir: string, source?: Source): Promise<void> {
    this.repo = dir;
    if (source?.kind === 'postgres') this.pgdata = source.cluster.data;
    const keyFile = join(dirname(dir), 'coffer.key');
    await writeFile(keyFile, LocalKeyProvider.newKeyFileContent(), { mode: 0o600 });
    this.env = { COFFER_KEY_FILE: keyFile };
    await this.coffer(['init']);
  }
  async backup(source: Source): Promise<StepFigures> {
    // The harness archives WAL into a plain directory and feeds each tool's archive afterwards, so the backup
    // cannot find its WAL in the repository yet: it is committed without that check, as pgBackRest's --no-archive-check.
    return source.kind === 'postgres' ? this.coffer(['backup', ...this.archiveCheckFlag], source.cluster.pgEnv) : this.coffer(['backup', '--path', source.dir]);
  }
  async walPush(segments: string[]): Promise<StepFigures> {
    const walDir = join(dirname(this.repo), 'pg_wal');
    const r = await archiveLikePostgres(segments, walDir, this.pgdata, (s) => this.command(['wal-push', s]));
    // The archiver the first call started does most of the work: its peak memory counts too.
    const archivers = (await readdir(join(walDir, '.coffer-ack')).catch(() => [] as string[])).filter((n) => n.startsWith('archiver-'));
    for (const n of archivers) {
      const pid = Number((await readFile(join(walDir, '.coffer-ack', n), 'utf8').catch(() => '')).split('\n')[0]);
      const status = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => '');
      const kib = Number(/VmHWM:\s+(\d+)/.exec(status)?.[1]);
      if (Number.isFinite(kib)) r.maxRssMiB = Math.max(r.maxRssMiB ?? 0, kib / 1024);
    }
    return r;
  }
  walFetch(names: string[]): Promise<StepFigures> {
    // restore_command runs in the data directory: its defaults (prefetch 2 at once, up to 128 MiB ahead), through
    // the installed command as the restore_command `coffer restore` writes calls it.
    const walDir = join(dirname(this.repo), 'pg_wal');
    return fetchLikePostgres(names, walDir, join(this.pgdata, 'global', 'pg_control'), (n, dest) => this.command(['wal-fetch', n, dest], dirname(walDir)));
  }
  async restore(to: string): Promise<StepFigures> {
    return this.coffer(['restore', 'latest', '--to', to]);
  }
  storedBytes(): Promise<number> {
    return treeBytes(this.repo);
  }
  /**
   * The harness feeds WAL to a separate repository; recovery needs it in this
   * one, so the segments from the oldest backup's start on (the chain every
   * backup needs) are pushed here first (not timed). Then one verify run, as
   * a nightly job would run it.
   */
  async verify(archiveDir: string): Promise<VerifyFigures> {
    const listed = JSON.parse((await this.coffer(['list', '--json'])).stdout) as { postgres?: { startLsn: string; timeline: number; walSegmentSize: number } }[];
    const pg = listed.find((b) => b.postgres)?.postgres;
    if (!pg) throw new Error('no PostgreSQL backup to verify');
    const [hi, lo] = pg.startLsn.split('/').map((h) => parseInt(h, 16)) as [number, number];
    const segNo = Math.floor((hi * 2 ** 32 + lo) / pg.walSegmentSize);
    const perLog = Math.floor(2 ** 32 / pg.walSegmentSize);
    const hex = (n: number) => n.toString(16).toUpperCase().padStart(8, '0');
    const first = hex(pg.timeline) + hex(Math.floor(segNo / perLog)) + hex(segNo % perLog);
    const names = (await readdir(archiveDir)).filter((n) => /^[0-9A-F]{24}$/.test(n) && n >= first).sort();
    await eachFile(names.map((n) => join(archiveDir, n)), (s) => this.coffer(['wal-push', s]));
    const r = await this.coffer(['verify', '--others', '0', '--json']);
    const report = JSON.parse(r.stdout) as {
      ok: boolean;
      readData?: { seconds: number; bytesRead: number };
      backups: { rtoSeconds: number; phases: { name: string; seconds: number }[]; checks: { name: string; seconds: number }[]; wal: { files: number } }[];
    };
    const b = report.backups[0]!;
    const phases: Record<string, number> = {};
    for (const p of b.phases) phases[p.name] = (phases[p.name] ?? 0) + p.seconds;
    return {
      ms: r.ms,
      maxRssMiB: r.maxRssMiB,
      ok: report.ok,
      rtoS: b.rtoSeconds,
      phases,
      checks: Object.fromEntries(b.checks.map((c) => [c.name, c.seconds])),
      readDataS: report.readData?.seconds ?? 0,
      bytesRead: report.readData?.bytesRead ?? 0,
      walFiles: b.wal.files,
    };
  }
}

/**
 * pgBackRest's configuration as the comparisons run it (zst, process-max 2,
 * aes-256-cbc, stanza `bench` for `cluster`), its log, lock and spool
 * directories made in `home` for the server user; `repo`: where the
 * repository is, and how.
 */
export async function pgBackRestConf(home: string, cluster: PostgresSandbox, repo: string[]): Promise<string> {
  for (const d of ['pgbr-log', 'pgbr-lock', 'pgbr-spool']) await ownedByServer(join(home, d));
  const lines = [
    '[global]',
    ...repo,
    `log-path=${join(home, 'pgbr-log')}`,
    `lock-path=${join(home, 'pgbr-lock')}`,
    `spool-path=${join(home, 'pgbr-spool')}`,
    'log-level-console=warn',
    'log-level-file=off',
    'compress-type=zst',
    'process-max=2',
    'repo1-retention-full=9999',
    'repo1-cipher-type=aes-256-cbc',
    'start-fast=y',
    // WAL is measured on its own (archive-push per segment), not through the backup.
    'archive-check=n',
    '[bench]',
    `pg1-path=${cluster.data}`,
    `pg1-port=${cluster.port}`,
    `pg1-socket-path=${dirname(cluster.data)}`,
    'pg1-user=postgres',
  ];
  return lines.join('\n') + '\n';
}

class PgBackRest implements Tool {
  readonly name = 'pgBackRest';
  readonly version: string;
  readonly settings: string;
  private conf = '';
  private repo = '';
  private pgdata = '';
  private full = true;
  constructor(version: string) {
    this.version = version;
    // Block incremental (repo1-block) arrived in 2.46; older versions re-copy every changed file whole.
    this.settings = `compress-type=zst, process-max=2, aes-256-cbc${this.hasBlockIncremental ? ', repo1-bundle + repo1-block' : ', file-level incremental (no block incremental before 2.46)'}`;
  }
  get hasBlockIncremental(): boolean {
    const [major, minor] = (/(\d+)\.(\d+)/.exec(this.version) ?? []).slice(1).map(Number);
    return (major ?? 0) > 2 || (major === 2 && (minor ?? 0) >= 46);
  }
  handles(kind: SourceKind): boolean {
    return kind !== 'files';
  }
  private pgbackrest(args: string[]) {
    return run('pgbackrest', [`--config=${this.conf}`, '--stanza=bench', ...args], { asServerUser: true, env: { PGBACKREST_REPO1_CIPHER_PASS: PASSWORD } });
  }
  async init(dir: string, source: Source): Promise<void> {
    if (source.kind !== 'postgres') throw new Error('pgBackRest backs up PostgreSQL only');
    const c = source.cluster;
    this.repo = dir;
    this.pgdata = c.data;
    const home = dirname(dir);
    await ownedByServer(dir);
    this.conf = join(home, 'pgbackrest.conf');
    await writeFile(this.conf, await pgBackRestConf(home, c, [`repo1-path=${dir}`, ...(this.hasBlockIncremental ? ['repo1-bundle=y', 'repo1-block=y'] : [])]));
    await this.pgbackrest(['stanza-create']);
  }
  async backup(): Promise<StepFigures> {
    const type = this.full ? 'full' : 'incr';
    this.full = false;
    return this.pgbackrest(['backup', `--type=${type}`]);
  }
  async walPush(segments: string[]): Promise<StepFigures> {
    // Async archive-push reads the .ready backlog from pg1-path's pg_wal: point it at the staged one (beside its
    // copy of the cluster's pg_control, which it reads there too).
    const walDir = join(dirname(this.repo), 'pg_wal');
    return archiveLikePostgres(segments, walDir, this.pgdata, (s) => this.pgbackrest(['archive-push', '--archive-async', `--pg1-path=${dirname(walDir)}`, s]));
  }
  walFetch(names: string[]): Promise<StepFigures> {
    // Async archive-get: the first call starts a process that fills the spool queue (archive-get-queue-max, 128 MiB by default), process-max 2.
    const walDir = join(dirname(this.repo), 'pg_wal');
    return fetchLikePostgres(names, walDir, join(this.pgdata, 'global', 'pg_control'), (n, dest) => this.pgbackrest(['archive-get', '--archive-async', `--pg1-path=${dirname(walDir)}`, n, dest]));
  }
  async restore(to: string): Promise<StepFigures> {
    await ownedByServer(to);
    return this.pgbackrest(['restore', `--pg1-path=${to}`]);
  }
  storedBytes(): Promise<number> {
    return treeBytes(this.repo);
  }
}

class Restic implements Tool {
  readonly name = 'restic';
  readonly version: string;
  readonly settings = 'repository v2, compression auto (zstd), AES-256-CTR + Poly1305';
  private env: Record<string, string> = {};
  private repo = '';
  constructor(version: string) {
    this.version = version;
  }
  handles(): boolean {
    return true;
  }
  private restic(args: string[], cwd?: string) {
    return run('restic', ['--quiet', ...args], { env: this.env, ...(cwd ? { cwd } : {}) });
  }
  async init(dir: string): Promise<void> {
    this.repo = dir;
    this.env = { RESTIC_REPOSITORY: dir, RESTIC_PASSWORD: PASSWORD, RESTIC_CACHE_DIR: join(dirname(dir), 'restic-cache') };
    await this.restic(['init']);
  }
  backup(source: Source): Promise<StepFigures> {
    if (source.kind === 'postgres') {
      const d = source.cluster.data;
      return this.restic(['backup', d, ...dataExcludes(d).flatMap((x) => ['--exclude', x])]);
    }
    return this.restic(['backup', source.dir]);
  }
  walPush(segments: string[]): Promise<StepFigures> {
    return this.restic(['backup', ...segments]);
  }
  restore(to: string): Promise<StepFigures> {
    return this.restic(['restore', 'latest', '--target', to]);
  }
  storedBytes(): Promise<number> {
    return treeBytes(this.repo);
  }
}

class Borg implements Tool {
  readonly name = 'borg';
  readonly version: string;
  readonly settings = 'repokey (AES-256-CTR + HMAC-SHA256), --compression zstd,3';
  private env: Record<string, string> = {};
  private repo = '';
  private n = 0;
  constructor(version: string) {
    this.version = version;
  }
  handles(): boolean {
    return true;
  }
  private borg(args: string[], cwd?: string) {
    return run('borg', args, { env: this.env, ...(cwd ? { cwd } : {}) });
  }
  async init(dir: string): Promise<void> {
    this.repo = dir;
    const base = join(dirname(dir), 'borg-home');
    this.env = { BORG_PASSPHRASE: PASSWORD, BORG_BASE_DIR: base, BORG_RELOCATED_REPO_ACCESS_IS_OK: 'yes' };
    await this.borg(['init', '--encryption=repokey', dir]);
  }
  backup(source: Source): Promise<StepFigures> {
    const name = `${this.repo}::b${this.n++}`;
    if (source.kind === 'postgres') {
      const d = source.cluster.data;
      return this.borg(['create', '--compression', 'zstd,3', ...dataExcludes(d).flatMap((x) => ['--exclude', `sh:${x}`]), name, d]);
    }
    return this.borg(['create', '--compression', 'zstd,3', name, source.dir]);
  }
  walPush(segments: string[]): Promise<StepFigures> {
    return this.borg(['create', '--compression', 'zstd,3', `${this.repo}::b${this.n++}`, ...segments]);
  }
  async restore(to: string): Promise<StepFigures> {
    await mkdir(to, { recursive: true });
    return this.borg(['extract', `${this.repo}::b${this.n - 1}`], to);
  }
  storedBytes(): Promise<number> {
    return treeBytes(this.repo);
  }
}

/**
 * Every tool of the comparison: a fresh instance of each installed one, and
 * why the others are missing. With `baseline` (a built checkout of another
 * revision), that Coffer runs too, right after this one, for before/after
 * figures taken in one sitting.
 */
export function detectTools(baseline?: string): { tools: Tool[]; missing: MissingTool[] } {
  const tools: Tool[] = [];
  const missing: MissingTool[] = [];
  const coffer = versionOf(process.execPath, [COFFER_BIN, '--version']);
  if (coffer) tools.push(new Coffer(coffer));
  else missing.push({ name: 'Coffer', missing: `${COFFER_BIN} did not run: build the project first (npm run build)` });
  if (baseline !== undefined) {
    const bin = join(baseline, 'packages', 'cli', 'bin', 'coffer.js');
    const version = versionOf(process.execPath, [bin, '--version']);
    if (!version) throw new Error(`--baseline ${baseline}: ${bin} did not run (build that checkout first)`);
    const rev = spawnSync('git', ['-C', baseline, 'rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).stdout?.trim() || version;
    tools.push(new Coffer(version, bin, `${BASELINE_PREFIX} ${rev}`));
  }
  const pgbr = versionOf('pgbackrest', ['version']);
  if (pgbr) tools.push(new PgBackRest(pgbr.replace(/^pgBackRest /, '')));
  else missing.push({ name: 'pgBackRest', missing: 'not installed (Debian package pgbackrest)' });
  const restic = versionOf('restic', ['version']);
  if (restic) tools.push(new Restic(/restic ([\d.]+)/.exec(restic)?.[1] ?? restic));
  else missing.push({ name: 'restic', missing: 'not installed (Debian package restic)' });
  const borg = versionOf('borg', ['--version']);
  if (borg) tools.push(new Borg(borg.replace(/^borg /, '')));
  else missing.push({ name: 'borg', missing: 'not installed (Debian package borgbackup)' });
  return { tools, missing };
}
