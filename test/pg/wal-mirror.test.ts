/**
 * WAL written to the repository and to a mirror in another "region" at once
 * (`--wal-mirror`), on a real PostgreSQL 15: the repository is a directory,
 * the mirror a bucket on radosgw reached through a proxy that can cut it off.
 * archive_command succeeds only once both hold a segment; with the mirror
 * cut off nothing is marked done and the segments wait in pg_wal; once it is
 * back they reach both. The mirror alone then restores every segment
 * PostgreSQL was told is archived, byte for byte; a wal-fetch through both
 * finds segments with the repository gone, and never calls a segment
 * missing while a store it could not reach may hold it. wal-receive writes
 * its stream to both as well.
 */
import { createHash } from 'node:crypto';
import { mkdir, readdir, readFile, rename } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { coffer, startCoffer } from '../support/cli.js';
import { FaultProxy } from '../support/fault-proxy.js';
import { Cluster, cofferAsPostgres, debianInstall, pgScratch, stopArchivers } from '../support/pg.js';
import { newBucket, s3Server } from '../support/s3.js';
import { until } from '../support/until.js';

const PASSPHRASE = 'wal mirror passphrase';
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

describe('WAL written to the repository and a mirror', () => {
  let work: { dir: string; cleanup: () => Promise<void> };
  let repo: string;
  let proxy: FaultProxy;
  let bucket: string;
  let cluster: Awaited<ReturnType<typeof Cluster.create>>;
  let walDir: string;
  /** The mirror as archive_command names it: its endpoint in the URL, credentials in the environment. */
  let mirror: string;
  let s3: Record<string, string>;

  beforeAll(async () => {
    const server = s3Server();
    proxy = await FaultProxy.start(server.endpoint);
    bucket = await newBucket();
    s3 = { AWS_ACCESS_KEY_ID: server.accessKeyId, AWS_SECRET_ACCESS_KEY: server.secretAccessKey, AWS_REGION: server.region };
    mirror = `s3://${bucket}/pg?endpoint=${encodeURIComponent(proxy.endpoint)}`;
    work = await pgScratch('coffer-wal-mirror-');
    repo = join(work.dir, 'repo');
    const env = { COFFER_PASSPHRASE: PASSPHRASE, ...s3 };
    expect((await cofferAsPostgres(['--repo', repo, 'init'], env)).status).toBe(0);
    // The mirror must be a copy of the repository before WAL goes to both.
    const early = await cofferAsPostgres(['--repo', repo, '--wal-mirror', mirror, 'wal-push', '/nonexistent/000000010000000000000001'], env);
    expect(early.status).not.toBe(0);
    expect(early.stderr).toMatch(/holds no repository: make it a copy/);
    const made = await cofferAsPostgres(['--repo', repo, 'mirror', '--to', `s3://${bucket}/pg`, '--to-s3-endpoint', proxy.endpoint], env);
    expect(made.status, made.stderr).toBe(0);
    cluster = await Cluster.create(debianInstall(), work.dir, { archiveRepo: repo, walMirrors: [mirror], passphrase: PASSPHRASE, env: s3, checksums: true, conf: { wal_keep_size: '512MB' } });
    await cluster.start();
    walDir = join(cluster.data, 'pg_wal');
    await cluster.query('CREATE TABLE t (id serial PRIMARY KEY, pad text)');
  }, 180_000);
  afterAll(async () => {
    if (cluster) await stopArchivers(cluster.data).catch(() => undefined);
    await cluster?.stop().catch(() => undefined);
    await proxy?.stop();
    await work?.cleanup();
  });

  const switchSegment = async () => {
    await cluster.query("INSERT INTO t (pad) SELECT md5(random()::text) FROM generate_series(1, 2000)");
    return (await cluster.query<{ wal: string }>('SELECT pg_walfile_name(pg_switch_wal()) AS wal'))[0]!.wal;
  };
  const marked = async (suffix: '.ready' | '.done') =>
    (await readdir(join(walDir, 'archive_status'))).filter((n) => n.endsWith(suffix)).map((n) => n.slice(0, -suffix.length)).filter((n) => /^[0-9A-F]{24}$/.test(n));
  const failedCount = async () => (await cluster.query<{ failed: number }>('SELECT failed_count::int AS failed FROM pg_stat_archiver'))[0]!.failed;

  /** Fetches `name` with `globals` (which stores, how reached): the exit status, and the bytes when it is 0. */
  const fetch = async (globals: string[], name: string, env: Record<string, string>) => {
    const out = join(work.dir, 'fetched');
    await mkdir(out, { recursive: true });
    const dest = join(out, `${name}-${Math.random().toString(36).slice(2)}`);
    const r = await coffer([...globals, 'wal-fetch', name, dest, '--prefetch', '0'], { COFFER_PASSPHRASE: PASSPHRASE, ...env });
    return { status: r.status, stderr: r.stderr, bytes: r.status === 0 ? await readFile(dest) : undefined };
  };
  /** Every segment marked done, fetched from the mirror alone: byte for byte what pg_wal holds. */
  const mirrorHoldsDone = async () => {
    const done = await marked('.done');
    for (const name of done) {
      const r = await fetch(['--repo', `s3://${bucket}/pg`], name, { ...s3, AWS_ENDPOINT_URL_S3: s3Server().endpoint });
      expect(r.status, `${name} is marked done: ${r.stderr}`).toBe(0);
      expect(sha(r.bytes!), name).toBe(sha(await readFile(join(walDir, name))));
    }
    return done;
  };

  const allDone = async (names: readonly string[]) => {
    const done = new Set(await marked('.done'));
    return names.every((n) => done.has(n));
  };

  it('archive_command acknowledges a segment once both hold it; with the mirror cut off segments wait in pg_wal, and reach both once it is back', async () => {
    const first = [await switchSegment(), await switchSegment(), await switchSegment()];
    await until(() => allDone(first), 'the first segments marked done', 60_000, 100);
    expect(await mirrorHoldsDone()).toEqual(expect.arrayContaining(first));

    // The mirror's region is lost: nothing more is acknowledged.
    proxy.down = true;
    const failedBefore = await failedCount();
    const waiting = [await switchSegment(), await switchSegment()];
    await until(async () => (await failedCount()) > failedBefore + 1, 'archive_command failing while the mirror is cut off', 120_000, 200);
    const ready = await marked('.ready');
    for (const n of waiting) expect(ready, `${n} waits in pg_wal`).toContain(n);
    expect(await allDone([waiting[0]!])).toBe(false);

    // Back: the backlog reaches both, and every segment marked done is in the mirror, and in the repository.
    proxy.down = false;
    await until(() => allDone(waiting), 'the backlog archived once the mirror is back', 120_000, 200);
    const done = await mirrorHoldsDone();
    expect(done).toEqual(expect.arrayContaining([...first, ...waiting]));
    for (const n of done) expect((await fetch(['--repo', repo], n, {})).status).toBe(0);
  }, 300_000);

  it('wal-fetch through both reads from the mirror with the repository gone, and never calls a segment missing that a store it could not reach may hold', async () => {
    const name = (await marked('.done'))[0]!;
    const both = ['--repo', repo, '--wal-mirror', mirror];
    // Recovery runs in a data directory; no standby.signal: a failure stops recovery (255) rather than end it short.
    const absentName = '0000000100000000000000F0';
    expect((await fetch(both, absentName, s3)).status).toBe(1);
    proxy.down = true;
    try {
      const r = await fetch(both, absentName, s3);
      expect(r.status, r.stderr).not.toBe(0);
      expect(r.status).not.toBe(1);
      expect(r.stderr).toMatch(/recovery stops here/);
    } finally {
      proxy.down = false;
    }
    // The repository's region is lost (its directory gone): the mirror serves the segment, byte for byte.
    await stopArchivers(cluster.data);
    await rename(repo, `${repo}.lost`);
    try {
      const r = await fetch(both, name, s3);
      expect(r.status, r.stderr).toBe(0);
      expect(sha(r.bytes!)).toBe(sha(await readFile(join(walDir, name))));
    } finally {
      await rename(`${repo}.lost`, repo);
    }
  }, 120_000);

  it('wal-receive writes its stream to both; --wal-mirror is refused where a command does not use it', async () => {
    const env = { COFFER_PASSPHRASE: PASSPHRASE, ...s3 };
    const db = `host=127.0.0.1 port=${cluster.port} user=postgres dbname=postgres`;
    let out = '';
    const run = startCoffer(['--repo', repo, '--wal-mirror', mirror, 'wal-receive', '--db', db, '--slot', 'mirrored', '--status-interval', '1'], env);
    run.child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    await until(() => /streaming timeline/.test(out), 'the receiver streaming', 30_000, 50);
    const segment = await switchSegment();
    await until(() => out.includes(`archived ${segment};`), `the receiver archiving ${segment}`, 60_000, 50);
    run.child.kill('SIGTERM');
    expect((await run.done).status).toBe(0);
    const r = await fetch(['--repo', `s3://${bucket}/pg`], segment, { ...s3, AWS_ENDPOINT_URL_S3: s3Server().endpoint });
    expect(r.status, r.stderr).toBe(0);
    expect(sha(r.bytes!)).toBe(sha(await readFile(join(walDir, segment))));
    await cluster.query("SELECT pg_drop_replication_slot('mirrored')");

    const refused = await coffer(['--repo', repo, '--wal-mirror', mirror, 'list'], env);
    expect(refused.status).toBe(3);
    expect(refused.stderr).toMatch(/--wal-mirror.*only the WAL commands/);
  }, 120_000);
});
