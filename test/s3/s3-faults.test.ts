/**
 * The real `coffer` against radosgw through a fault-injecting proxy: with 20%
 * of requests failing in every way the proxy knows (errors before and after
 * the server acted, throttling, connections reset mid-body, slow answers,
 * bodies damaged on the way), backups, WAL archiving and restores complete and
 * check --read-data passes. With the store gone for good, commands fail with
 * a clear error and a non-zero status, and no manifest ever references an
 * object that is not there.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { coffer, startCoffer, type RunResult } from '../support/cli.js';
import { ALL_FAULTS, FaultProxy } from '../support/fault-proxy.js';
import { Cluster, cofferAsPostgres, debianInstall, pgScratch } from '../support/pg.js';
import { newBucket, s3Env, s3Server } from '../support/s3.js';
import { pseudoRandom, snapshot } from '../support/tree.js';

const ok = (r: RunResult, what: string): RunResult => {
  expect(r.status, `${what}: ${r.stderr}`).toBe(0);
  return r;
};

async function writeFiles(dir: string, count: number, seed: number): Promise<void> {
  await mkdir(dir, { recursive: true });
  for (let i = 0; i < count; i++) await writeFile(join(dir, `f${seed}-${i}.bin`), pseudoRandom(50_000 + ((i * 7919) % 400_000), seed * 1000 + i));
}

describe('S3 faults, end to end', () => {
  let proxy: FaultProxy;
  let work: { dir: string; cleanup: () => Promise<void> };
  let repo: string;
  let env: Record<string, string>;

  beforeAll(async () => {
    proxy = await FaultProxy.start(s3Server().endpoint, { slowMs: 400 });
    work = await pgScratch('coffer-s3-faults-');
    repo = `s3://${await newBucket()}/faults`;
    env = { ...s3Env(proxy.endpoint), COFFER_PASSPHRASE: 'fault tolerant' };
    // Small packs: many more requests for the faults to land on.
    ok(await coffer(['--repo', repo, 'init', '--pack-size', String(256 << 10)], env), 'init');
  }, 120_000);

  afterAll(async () => {
    await proxy?.stop();
    await work?.cleanup();
  });

  it('with 20% of requests failing, files backups and restores complete and check --read-data passes', async () => {
    const src = join(work.dir, 'tree');
    await writeFiles(src, 40, 1);
    proxy.failureRate = 0.2;
    const before = proxy.injected;
    ok(await coffer(['--repo', repo, 'backup', '--path', src], env), 'first backup');
    await writeFiles(join(src, 'more'), 10, 2);
    ok(await coffer(['--repo', repo, 'backup', '--path', src], env), 'second backup');
    const to = join(work.dir, 'restored');
    ok(await coffer(['--repo', repo, 'restore', 'latest', '--to', to], env), 'restore');
    expect(await snapshot(to)).toEqual(await snapshot(src));
    ok(await coffer(['--repo', repo, 'check', '--read-data'], env), 'check --read-data');
    expect(proxy.injected - before).toBeGreaterThan(20);
    // Each kind of fault at 20% of some 160 requests: at least five of the seven kinds land in any run.
    expect(ALL_FAULTS.filter((f) => (proxy.counts[f] ?? 0) > 0).length).toBeGreaterThanOrEqual(5);
    proxy.failureRate = 0;
  }, 300_000);

  it('with 20% of requests failing, a PostgreSQL base backup, WAL archiving and a point-in-time restore complete', async () => {
    const install = debianInstall();
    const cluster = await Cluster.create(install, work.dir, { archiveRepo: repo, env, checksums: true });
    await cluster.start();
    try {
      await cluster.query('CREATE TABLE t (id int PRIMARY KEY, filler text DEFAULT repeat(md5(random()::text), 30))');
      await cluster.query('INSERT INTO t(id) SELECT g FROM generate_series(1, 20000) g');
      proxy.failureRate = 0.2;
      ok(await cofferAsPostgres(['--repo', repo, 'backup'], { ...env, ...cluster.pgEnv }), 'pg backup');
      await cluster.query('INSERT INTO t(id) SELECT g FROM generate_series(20001, 25000) g');
      await cluster.query(`SELECT pg_create_restore_point('after_25000')`);
      await cluster.query('INSERT INTO t(id) SELECT g FROM generate_series(25001, 26000) g');
      await cluster.archiveNow(120_000);
      const to = join(work.dir, 'pg-restored');
      ok(await cofferAsPostgres(['--repo', repo, 'restore', '--to', to, '--target-name', 'after_25000'], env), 'pg restore');
      const restored = await Cluster.adopt(install, to, { env });
      await restored.start({ archive_mode: 'off' });
      try {
        await restored.waitPromoted();
        const [row] = await restored.query<{ n: string; max: number }>('SELECT count(*) AS n, max(id) AS max FROM t');
        expect(row).toEqual({ n: '25000', max: 25000 });
      } finally {
        await restored.stop();
      }
      ok(await coffer(['--repo', repo, 'check', '--read-data'], env), 'check --read-data');
    } finally {
      proxy.failureRate = 0;
      await cluster.stop();
    }
  }, 300_000);

  it('with the store gone for good, commands fail non-zero with a clear error, and no manifest references a missing object', async () => {
    const backupsBefore = (JSON.parse(ok(await coffer(['--repo', repo, 'list', '--json'], env), 'list').stdout) as unknown[]).length;
    const src = join(work.dir, 'outage');
    await writeFiles(src, 30, 3);

    proxy.down = true;
    const refused = await coffer(['--repo', repo, 'backup', '--path', src], env);
    expect(refused.status).toBe(14);
    expect(refused.stderr).toMatch(/^coffer: store unavailable for \S+: s3:\/\/coffer-[0-9a-f]+\/faults: .*gave up after \d+ tries/m);
    expect(refused.stderr).not.toContain(env.AWS_SECRET_ACCESS_KEY!);
    const restore = await coffer(['--repo', repo, 'restore', 'latest', '--to', join(work.dir, 'never')], env);
    expect(restore.status).toBe(14);
    proxy.down = false;

    // The store goes away in the middle of a backup, after some packs are written.
    const run = startCoffer(['--repo', repo, 'backup', '--path', src], env);
    const start = proxy.counts.requests;
    while (proxy.counts.requests < start + 12 && run.child.exitCode === null) await new Promise((r) => setTimeout(r, 20));
    proxy.down = true;
    const cut = await run.done;
    proxy.down = false;
    expect(cut.status).toBe(14);

    const check = JSON.parse((await coffer(['--repo', repo, 'check', '--read-data', '--json'], env)).stdout) as { ok: boolean; backups: number; problems: unknown[] };
    expect(check.problems).toEqual([]);
    expect(check.ok).toBe(true);
    expect(check.backups).toBe(backupsBefore);
    // And once the store is back, the same backup goes through.
    ok(await coffer(['--repo', repo, 'backup', '--path', src], env), 'backup after the outage');
  }, 300_000);
});
