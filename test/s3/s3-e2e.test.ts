/**
 * End to end over s3:// with KMS keys, through the real `coffer` command: a
 * repository on radosgw whose data key is wrapped by a KMS key in one region;
 * files and PostgreSQL base backups, WAL archived by archive_command and
 * fetched by restore_command; a point-in-time restore; a second region's key
 * added, the data key rotated, the repository mirrored to a second bucket; then
 * the first region's key disabled and the mirror restored to a point in time
 * with the second key alone. Mirrors between file and S3 stores both ways, and
 * a corrupt source object that is reported and not copied.
 */
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { coffer, type RunResult } from '../support/cli.js';
import { KmsTestServer } from '../support/kms-server.js';
import { Cluster, cofferAsPostgres, debianInstall, pgScratch } from '../support/pg.js';
import { newBucket, s3Env, s3Server, s3Store } from '../support/s3.js';
import { collectList, ObjectConflictError, StoreAccessDeniedError } from '@coffer/engine';
import { pseudoRandom, snapshot } from '../support/tree.js';

const ok = (r: RunResult, what: string): RunResult => {
  expect(r.stderr, `${what}: stderr`).toBe('');
  expect(r.status, `${what}: ${r.stderr}`).toBe(0);
  return r;
};

describe('s3:// repositories with KMS keys, end to end', () => {
  const install = debianInstall();
  let kms: KmsTestServer;
  let east: string;
  let west: string;
  let primary: string;
  let mirrorRepo: string;
  let work: { dir: string; cleanup: () => Promise<void> };
  let cluster: Cluster;
  let env: Record<string, string>;
  const committed: { id: number; at: string }[] = [];

  // The commit timestamp is only known once committed: read it back after the insert.
  const insertRows = async (n: number) => {
    for (let i = 0; i < n; i++) {
      const id = committed.length + 1;
      const [r] = await cluster.query<{ xid: string }>(`INSERT INTO t(id) VALUES ($1) RETURNING xmin::text AS xid`, [id]);
      const [c] = await cluster.query<{ at: string }>(`SELECT to_char(pg_xact_commit_timestamp($1::xid) AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00' AS at`, [r!.xid]);
      committed.push({ id, at: c!.at });
    }
  };

  /** Restores `repo` to the commit time of row `k`, starts it, and returns the ids it holds. */
  const pitrIds = async (repo: string, k: number, runEnv: Record<string, string>): Promise<number[]> => {
    const to = join(work.dir, `restore-${repo.replace(/\W/g, '-')}-${k}`);
    ok(await cofferAsPostgres(['--repo', repo, 'restore', '--to', to, '--target-time', committed[k - 1]!.at], runEnv), 'restore');
    const c = await Cluster.adopt(install, to, { env: runEnv });
    await c.start({ archive_mode: 'off' });
    try {
      await c.waitPromoted(60_000);
      return (await c.query<{ id: number }>('SELECT id FROM t ORDER BY id')).map((x) => x.id);
    } finally {
      await c.stop();
    }
  };
  const upTo = (k: number) => Array.from({ length: k }, (_, i) => i + 1);

  beforeAll(async () => {
    const s3 = s3Server();
    // One set of AWS credentials for both services, as the SDK's chain gives one.
    kms = await KmsTestServer.start({ accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey });
    east = await kms.createKey('us-east-1');
    west = await kms.createKey('eu-west-1');
    primary = `s3://${await newBucket()}/prod/pg`;
    mirrorRepo = `s3://${await newBucket()}/dr/pg`;
    env = { ...s3Env(), AWS_ENDPOINT_URL_KMS: kms.endpoint, COFFER_KMS_KEY_ID: east };
    work = await pgScratch('coffer-s3-e2e-');
    ok(await coffer(['--repo', primary, 'init'], env), 'init');
    cluster = await Cluster.create(install, work.dir, { archiveRepo: primary, env, checksums: true });
    await cluster.start();
    await cluster.query('CREATE TABLE t (id int PRIMARY KEY, filler text DEFAULT repeat(md5(random()::text), 30))');
    await cluster.query('INSERT INTO t(id) SELECT -g FROM generate_series(1, 30000) g');
    await cluster.query('DELETE FROM t WHERE id < 0');
    await insertRows(5);
  }, 300_000);

  afterAll(async () => {
    await cluster?.stop();
    await kms?.stop();
    await work?.cleanup();
  });

  it('init wrapped the data key with the KMS key only; a passphrase does not open it', async () => {
    const keys = JSON.parse(ok(await coffer(['--repo', primary, 'key', 'list', '--json'], env), 'key list').stdout) as { id: number; wrappedBy: string[] }[];
    expect(keys).toEqual([{ id: 1, current: true, open: true, wrappedBy: [`aws-kms/${east}`] }]);
    const r = await coffer(['--repo', primary, 'list'], { ...env, COFFER_KMS_KEY_ID: west, COFFER_PASSPHRASE: 'guess' });
    expect(r.status).toBe(6);
    expect(r.stderr).toMatch(/wrong key/);
  });

  it('a files backup restores byte for byte', async () => {
    const src = join(work.dir, 'files');
    await mkdir(join(src, 'sub'), { recursive: true });
    await writeFile(join(src, 'big.bin'), pseudoRandom(5 << 20, 7));
    await writeFile(join(src, 'sub', 'small.txt'), 'hello over S3\n');
    ok(await coffer(['--repo', primary, 'backup', '--path', src, '--tag', 'files'], env), 'files backup');
    const to = join(work.dir, 'files-restored');
    ok(await coffer(['--repo', primary, 'restore', 'latest', '--to', to], env), 'files restore');
    expect(await snapshot(to)).toEqual(await snapshot(src));
  });

  it('PostgreSQL base backup, WAL archived and fetched over S3, PITR to a commit time; check --read-data', async () => {
    ok(await cofferAsPostgres(['--repo', primary, 'backup'], { ...env, ...cluster.pgEnv }), 'pg backup');
    await insertRows(10);
    await cluster.archiveNow();
    const wal = await coffer(['--repo', primary, 'check', '--json'], env);
    expect((JSON.parse(ok(wal, 'check').stdout) as { walFiles: number }).walFiles).toBeGreaterThan(0);
    expect(await pitrIds(primary, 11, env)).toEqual(upTo(11));
    const check = JSON.parse(ok(await coffer(['--repo', primary, 'check', '--read-data', '--json'], env), 'check --read-data').stdout) as { ok: boolean; chunksVerified: number };
    expect(check.ok).toBe(true);
    expect(check.chunksVerified).toBeGreaterThan(0);
  });

  it('key add and key rotate, then a mirror to the second region restores a point in time with its own key alone', async () => {
    ok(await coffer(['--repo', primary, 'key', 'add', '--kms-key-id', west], env), 'key add');
    ok(await coffer(['--repo', primary, 'key', 'rotate'], env), 'key rotate');
    const keys = JSON.parse(ok(await coffer(['--repo', primary, 'key', 'list', '--json'], env), 'key list').stdout) as { id: number; current: boolean; wrappedBy: string[] }[];
    expect(keys.map((k) => [k.id, k.current, [...k.wrappedBy].sort()])).toEqual([
      [1, false, [`aws-kms/${east}`, `aws-kms/${west}`].sort()],
      [2, true, [`aws-kms/${east}`, `aws-kms/${west}`].sort()],
    ]);
    // New data under the rotated key: a second base backup and more WAL.
    ok(await cofferAsPostgres(['--repo', primary, 'backup'], { ...env, ...cluster.pgEnv }), 'pg backup after rotation');
    // Recovery to a commit time needs WAL past that commit: rows beyond the last target.
    await insertRows(13);
    await cluster.archiveNow();

    const first = JSON.parse(ok(await coffer(['--repo', primary, 'mirror', '--to', mirrorRepo, '--json'], env), 'mirror').stdout) as { copied: number; copiedByPrefix: Record<string, number> };
    expect(first.copied).toBeGreaterThan(10);
    for (const p of ['data/', 'index/', 'keys/', 'backups/', 'wal/', 'config']) expect(first.copiedByPrefix[p], p).toBeGreaterThan(0);
    const again = JSON.parse(ok(await coffer(['--repo', primary, 'mirror', '--to', mirrorRepo, '--json'], env), 'second mirror').stdout) as { copied: number; present: number };
    expect(again.copied).toBe(0);
    expect(again.present).toBe(first.copied);

    kms.setEnabled(east, false);
    const westEnv = { ...env, COFFER_KMS_KEY_ID: west };
    const refused = await coffer(['--repo', primary, 'list'], env);
    expect(refused.status).toBe(6);
    expect(refused.stderr).toMatch(/DisabledException/);
    // Both the backup taken before the rotation and the one after, to points in time after each.
    expect(await pitrIds(mirrorRepo, 15, westEnv)).toEqual(upTo(15));
    expect(await pitrIds(mirrorRepo, 25, westEnv)).toEqual(upTo(25));
    ok(await coffer(['--repo', mirrorRepo, 'check', '--read-data'], westEnv), 'check the mirror');
    kms.setEnabled(east, true);
  }, 300_000);

  it('mirrors from S3 to a directory and from a directory to S3; a corrupt source object is reported and not copied', async () => {
    const westEnv = { ...env, COFFER_KMS_KEY_ID: west };
    const local = join(work.dir, 'local-copy');
    const toFile = JSON.parse(ok(await coffer(['--repo', mirrorRepo, 'mirror', '--to', local, '--json'], westEnv), 'mirror S3 → file').stdout) as { copied: number };
    expect(toFile.copied).toBeGreaterThan(10);
    ok(await coffer(['--repo', local, 'check', '--read-data'], westEnv), 'check the file copy');

    const back = `s3://${await newBucket()}/from-file`;
    const toS3 = JSON.parse(ok(await coffer(['--repo', local, 'mirror', '--to', back, '--json'], westEnv), 'mirror file → S3').stdout) as { copied: number };
    // Everything it received, and the two audit records of its own since: the mirror that wrote it, and the check.
    expect(toS3.copied).toBe(toFile.copied + 2);
    expect(JSON.parse(ok(await coffer(['--repo', local, 'mirror', '--to', back, '--json'], westEnv), 'again').stdout).copied).toBe(0);

    // Damage one pack in the directory copy, then mirror it to a fresh bucket.
    const fan = (await readdir(join(local, 'data')))[0]!;
    const name = (await readdir(join(local, 'data', fan)))[0]!;
    const packPath = join(local, 'data', fan, name);
    const bytes = await readFile(packPath);
    bytes[bytes.length >> 1] = bytes[bytes.length >> 1]! ^ 0xff;
    await writeFile(packPath, bytes);
    const damaged = `s3://${await newBucket()}/damaged`;
    const r = await coffer(['--repo', local, 'mirror', '--to', damaged], westEnv);
    expect(r.status).toBe(11);
    expect(r.stderr).toContain(`data/${fan}/${name}`);
    expect(r.stderr).toMatch(/SHA-256/);
    const listed = await coffer(['--repo', damaged, 'check'], westEnv);
    // Everything else arrived; the damaged pack did not, and check says which one is missing.
    expect(listed.status).toBe(10);
    expect(listed.stdout + listed.stderr).toContain(name);
  });

  it('with Object Lock on, deleting or overwriting a locked pack fails and the repository stays intact', async () => {
    const bucket = await newBucket({ objectLock: true });
    const repo = `s3://${bucket}/locked`;
    const lockEnv = { ...env, COFFER_S3_OBJECT_LOCK: 'COMPLIANCE:1' };
    ok(await coffer(['--repo', repo, 'init'], lockEnv), 'init');
    const src = join(work.dir, 'locked-src');
    await mkdir(src, { recursive: true });
    await writeFile(join(src, 'a.bin'), pseudoRandom(3 << 20, 11));
    ok(await coffer(['--repo', repo, 'backup', '--path', src], lockEnv), 'backup');
    const store = s3Store(bucket, { prefix: 'locked' });
    const packs = await collectList(store, 'data/');
    expect(packs.length).toBeGreaterThan(0);
    for (const { key } of packs) {
      await expect(store.delete(key)).rejects.toBeInstanceOf(StoreAccessDeniedError);
      await expect(store.put(key, Buffer.from('not the pack'))).rejects.toBeInstanceOf(ObjectConflictError);
    }
    await expect(store.deleteMany(packs.map((p) => p.key))).rejects.toBeInstanceOf(StoreAccessDeniedError);
    store.destroy();
    ok(await coffer(['--repo', repo, 'check', '--read-data'], env), 'check --read-data');
    const to = join(work.dir, 'locked-restored');
    ok(await coffer(['--repo', repo, 'restore', 'latest', '--to', to], env), 'restore');
    expect(await snapshot(to)).toEqual(await snapshot(src));
  });
});
