/**
 * What streaming WAL into Coffer costs and buys (`--only rpo`):
 *
 * 1. The RPO drill of the reliability suite (test/chaos/wal-stream.test.ts)
 *    at its full count: a client commits one row at a time against a primary
 *    that `coffer wal-receive` streams from; the primary's host is lost
 *    (postmaster SIGKILLed, data directory removed) at a random moment; the
 *    repository is restored to its end and the commits the client saw
 *    succeed are looked for. Asynchronous and synchronous (Coffer named in
 *    synchronous_standby_names), 20 trials each (1 with --quick).
 * 2. The price of synchronous commit: pgbench against the same server with
 *    no synchronous standby, with `coffer wal-receive --synchronous` as the
 *    synchronous standby, and with `pg_receivewal --synchronous` (WAL into a
 *    local directory: the floor for a receiver that flushes before it
 *    answers), one after another in one run.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { LocalKeyProvider } from '@coffer/engine';
import { findPostgres, PostgresSandbox, serverScratch } from '@coffer/verify';
import { run } from './compare/proc.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const COFFER_BIN = join(ROOT, 'packages', 'cli', 'bin', 'coffer.js');

export interface DrillRow {
  mode: 'asynchronous' | 'synchronous';
  trials: number;
  acknowledged: number;
  commitsPerSecond: number;
  lost: number;
  longestWindowSeconds: number;
  flushIntervalSeconds: number;
  flushP99Ms: number;
}

/** Runs the drill section of the reliability suite at its short or full count; its rows, and whether every assertion held. */
export async function rpoDrill(full: boolean, log: (line: string) => void): Promise<{ rows: DrillRow[]; passed: boolean }> {
  const file = join(tmpdir(), `coffer-rpo-${process.pid}.jsonl`);
  await rm(file, { force: true });
  log(`RPO drill: ${full ? 20 : 1} trial(s) each, asynchronous and synchronous`);
  const r = spawnSync(process.execPath, [join(ROOT, 'node_modules', 'vitest', 'vitest.mjs'), 'run', 'test/chaos/wal-stream.test.ts', '-t', 'RPO drill'], {
    cwd: ROOT,
    stdio: ['ignore', 2, 2],
    env: { ...process.env, CHAOS_LONG: full ? '1' : '0', RPO_REPORT_FILE: file },
  });
  const rows = (await readFile(file, 'utf8').catch(() => ''))
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as DrillRow);
  await rm(file, { force: true });
  return { rows, passed: r.status === 0 && rows.length === 2 };
}

export interface SyncRow {
  standby: string;
  tps: number;
  latencyMs: number;
}

/** pgbench for `seconds` with each kind of synchronous standby in turn. */
export async function syncCommitFigures(seconds: number, clients: number, log: (line: string) => void): Promise<SyncRow[]> {
  const scratch = await serverScratch('coffer-bench-sync-');
  const install = findPostgres();
  const cluster = await PostgresSandbox.create(install, scratch.dir, { conf: { max_wal_senders: '4', max_replication_slots: '4', wal_level: 'replica' } });
  const children: ChildProcess[] = [];
  try {
    await cluster.start();
    const conn = ['-h', '127.0.0.1', '-p', String(cluster.port), '-U', 'postgres'];
    const db = `host=127.0.0.1 port=${cluster.port} user=postgres dbname=postgres`;
    await run(join(install.bin, 'pgbench'), ['-i', '-q', '-s', '10', ...conn, 'postgres']);
    const repo = join(scratch.dir, 'repo');
    const keyFile = join(scratch.dir, 'coffer.key');
    await writeFile(keyFile, LocalKeyProvider.newKeyFileContent(), { mode: 0o600 });
    const env = { ...process.env, COFFER_KEY_FILE: keyFile };
    spawnSync(process.execPath, [COFFER_BIN, '--repo', repo, '--quiet', 'init'], { env, stdio: 'ignore' });

    const bench = async (standby: string): Promise<SyncRow> => {
      const out = (await run(join(install.bin, 'pgbench'), ['-n', '-c', String(clients), '-j', String(Math.min(clients, 2)), '-T', String(seconds), ...conn, 'postgres'])).stdout;
      const tps = Number(/tps = ([\d.]+)/.exec(out)?.[1]);
      const latencyMs = Number(/latency average = ([\d.]+) ms/.exec(out)?.[1]);
      log(`  ${standby}: ${tps.toFixed(0)} tps, ${latencyMs.toFixed(2)} ms per transaction`);
      return { standby, tps, latencyMs };
    };
    const synchronous = async (name: string | undefined) => {
      await cluster.query(`ALTER SYSTEM SET synchronous_standby_names = '${name ?? ''}'`);
      await cluster.query('SELECT pg_reload_conf()');
      if (!name) return;
      const end = Date.now() + 60_000;
      while ((await cluster.query<{ s: string }>(`SELECT sync_state AS s FROM pg_stat_replication WHERE application_name = '${name}'`))[0]?.s !== 'sync') {
        if (Date.now() > end) throw new Error(`${name} did not become the synchronous standby`);
        await new Promise((r) => setTimeout(r, 100));
      }
    };
    const stop = async (child: ChildProcess) => {
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await exited;
    };

    log(`synchronous commit: pgbench, ${clients} clients, ${seconds} s each`);
    const rows = [await bench('none (asynchronous)')];

    const receiver = spawn(process.execPath, [COFFER_BIN, '--repo', repo, 'wal-receive', '--db', db, '--slot', 'coffer', '--synchronous'], { env, stdio: ['ignore', 'ignore', 'inherit'] });
    children.push(receiver);
    await synchronous('coffer');
    rows.push(await bench('coffer wal-receive --synchronous'));
    await synchronous(undefined);
    await stop(receiver);

    const dir = join(scratch.dir, 'received');
    await mkdir(dir);
    await run(join(install.bin, 'pg_receivewal'), ['--create-slot', '-S', 'receivewal', ...conn]);
    const receivewal = spawn(join(install.bin, 'pg_receivewal'), ['-D', dir, '-S', 'receivewal', '--synchronous', '-n', ...conn], { env: { ...process.env, PGAPPNAME: 'pg_receivewal' }, stdio: ['ignore', 'ignore', 'inherit'] });
    children.push(receivewal);
    await synchronous('pg_receivewal');
    rows.push(await bench('pg_receivewal --synchronous'));
    await synchronous(undefined);
    await stop(receivewal);
    return rows;
  } finally {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    await cluster.stop('immediate').catch(() => undefined);
    await scratch.cleanup();
  }
}
