/**
 * Object Lock and versions on radosgw, end to end through the coffer command:
 *
 * - retention is set object by object on what must outlive its writer
 *   (packs, index, manifests, WAL records…), never on leases, so those are
 *   removed as usual;
 * - expire and gc leave objects under retention in place and say until when,
 *   and delete what they may; gc extends the retention of live objects whose
 *   lock would run out before the next collections (dedup keeps old packs
 *   live), and not that of dead ones;
 * - a plain DELETE on a versioned bucket only hides an object behind a delete
 *   marker: check reports it as hidden, info counts the noncurrent bytes, and
 *   repair makes it current again;
 * - `coffer bucket setup` writes the lifecycle rules (keeping other rules) and
 *   takes off a bucket default retention; `--check` exits 30 until it has.
 */
import { createHash } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  DeleteObjectCommand,
  DeleteObjectsCommand,
  ListObjectVersionsCommand,
  GetBucketLifecycleConfigurationCommand,
  GetObjectLockConfigurationCommand,
  PutBucketLifecycleConfigurationCommand,
  PutObjectLockConfigurationCommand,
} from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { collectList } from '@coffer/engine';
import { coffer } from '../support/cli.js';
import { newBucket, s3Client, s3Env, s3Store } from '../support/s3.js';
import { pseudoRandom, scratch, snapshot } from '../support/tree.js';

const DAY = 86_400_000;

describe('Object Lock and versions on radosgw', () => {
  let work: { dir: string; cleanup: () => Promise<void> };
  let env: Record<string, string>;

  beforeAll(async () => {
    work = await scratch('coffer-object-lock-');
    const keyFile = join(work.dir, 'key');
    await writeFile(keyFile, pseudoRandom(32, 5).toString('base64'), { mode: 0o600 });
    env = { ...s3Env(), COFFER_KEY_FILE: keyFile };
  });
  afterAll(async () => work.cleanup());

  async function sourceWith(name: string, seed: number): Promise<string> {
    const src = join(work.dir, name);
    await mkdir(src, { recursive: true });
    await writeFile(join(src, 'a.bin'), pseudoRandom(400_000, seed));
    return src;
  }

  it('locks object by object; expire and gc leave locked objects and say until when; gc extends the retention of live objects only', async () => {
    const bucket = await newBucket({ objectLock: true });
    const repo = `s3://${bucket}/repo`;
    const lock1 = { ...env, COFFER_S3_OBJECT_LOCK: 'COMPLIANCE:1' };
    const run = (args: string[], e = lock1) => coffer(['--repo', repo, ...args], e);
    expect((await run(['init'])).status).toBe(0);
    const src = await sourceWith('src-a', 1);
    expect((await run(['-q', 'backup', '--path', src])).status).toBe(0);
    await writeFile(join(src, 'a.bin'), pseudoRandom(400_000, 2));
    expect((await run(['-q', 'backup', '--path', src])).status).toBe(0);

    const store = s3Store(bucket, { prefix: 'repo' });
    const lockedStore = s3Store(bucket, { prefix: 'repo', objectLock: { mode: 'COMPLIANCE', days: 1 } });
    try {
      // What must outlive its writer carries retention of its own; the lease records do not.
      const retained = async (prefix: string) => Promise.all((await collectList(store, prefix)).map(async (o) => [o.key, await store.versions.retention(o.key)] as const));
      for (const prefix of ['config', 'keys/', 'data/', 'index/', 'backups/', 'catalogue/']) {
        const found = await retained(prefix);
        expect(found.length, prefix).toBeGreaterThan(0);
        for (const [key, r] of found) {
          expect(r?.mode, key).toBe('COMPLIANCE');
          expect(r!.until.getTime(), key).toBeGreaterThan(Date.now() + DAY / 2);
        }
      }
      const leases = await retained('locks/');
      expect(leases.length).toBeGreaterThan(0);
      for (const [key, r] of leases) expect(r, key).toBeUndefined();

      // Expire would remove the older backup, but its manifest is under retention: it stays, and the report says until when.
      const expired = await run(['expire', '--keep-min', '1']);
      expect(expired.status, expired.stderr).toBe(0);
      expect(expired.stdout).toMatch(/under Object Lock \(COMPLIANCE\) until 20\d\d-.*backups\//);
      expect(expired.stdout).toMatch(/expired 0 backup\(s\)/);
      const listed = await run(['list']);
      expect(listed.stdout.trim().split('\n').filter((l) => /^[0-9a-f]{12}/.test(l))).toHaveLength(2);

      // Two packs nothing references: one written under retention, one without.
      const put = async (s: typeof store, seed: number) => {
        const bytes = pseudoRandom(5000, seed);
        const sha = createHash('sha256').update(bytes).digest('hex');
        await s.put(`data/${sha.slice(0, 2)}/${sha}`, bytes);
        return `data/${sha.slice(0, 2)}/${sha}`;
      };
      const lockedOrphan = await put(lockedStore, 11);
      const freeOrphan = await put(store, 12);
      const lockedUntil = (await store.versions.retention(lockedOrphan))!.until.getTime();

      // A collection that locks for three days: deletes the free orphan, leaves the locked one, extends what is live.
      const lock3 = { ...env, COFFER_S3_OBJECT_LOCK: 'COMPLIANCE:3' };
      const gc = await run(['gc', '--json'], lock3);
      expect(gc.status, gc.stderr).toBe(0);
      const report = JSON.parse(gc.stdout) as { deletedPacks: number; locked: { key: string; until: string }[]; retentionExtended: number; removedLeaseObjects: number };
      expect(report.deletedPacks).toBe(1);
      expect(await store.head(freeOrphan)).toBeUndefined();
      expect(await store.head(lockedOrphan)).toBeDefined();
      expect(report.locked.map((l) => l.key)).toEqual([lockedOrphan]);
      expect(Math.abs(Date.parse(report.locked[0]!.until) - lockedUntil)).toBeLessThan(2000);
      // Leases end and are removed: nothing locks them.
      expect(report.removedLeaseObjects).toBeGreaterThan(0);
      expect(report.retentionExtended).toBeGreaterThan(0);
      for (const [key, r] of [...(await retained('data/')), ...(await retained('backups/')), ...(await retained('index/'))]) {
        if (key === lockedOrphan) expect(r!.until.getTime(), 'a dead pack keeps its old date').toBe(lockedUntil);
        else expect(r!.until.getTime(), key).toBeGreaterThan(Date.now() + 2.5 * DAY);
      }
      const text = await run(['gc']);
      expect(text.status).toBe(0);
      expect(text.stdout).toMatch(/1 object\(s\) left in place under Object Lock retention, deletable from 20\d\d-/);

      const checked = await run(['check', '--read-data']);
      expect(checked.status, checked.stdout + checked.stderr).toBe(0);
      const out = join(work.dir, 'restored-a');
      expect((await run(['-q', 'restore', 'latest', '--to', out])).status).toBe(0);
      expect(await snapshot(out)).toEqual(await snapshot(src));
    } finally {
      store.destroy();
      lockedStore.destroy();
    }
  });

  it('gc keeps every pack a locked index object lists, even when nothing references it any more', async () => {
    const bucket = await newBucket({ objectLock: true });
    const repo = `s3://${bucket}/repo`;
    const lockEnv = { ...env, COFFER_S3_OBJECT_LOCK: 'GOVERNANCE:1' };
    const run = (args: string[]) => coffer(['--repo', repo, ...args], lockEnv);
    expect((await run(['init'])).status).toBe(0);
    const first = await sourceWith('src-first', 21);
    expect((await run(['-q', 'backup', '--path', first])).status).toBe(0);
    const store = s3Store(bucket, { prefix: 'repo' });
    const client = s3Client();
    try {
      const firstPacks = (await collectList(store, 'data/')).map((o) => o.key);
      const firstIndex = (await collectList(store, 'index/')).map((o) => o.key);
      const second = await sourceWith('src-second', 22);
      expect((await run(['-q', 'backup', '--path', second, '--parent', 'none'])).status).toBe(0);
      // An administrator removes the first backup past its GOVERNANCE lock (every version of its manifest and summary).
      const [firstManifest] = (await collectList(store, 'backups/')).map((o) => o.key).sort();
      const firstSummary = (await collectList(store, 'catalogue/')).map((o) => o.key).find((k) => k.includes(firstManifest!.slice('backups/'.length)))!;
      for (const key of [firstManifest!, firstSummary]) {
        const versions = await client.send(new ListObjectVersionsCommand({ Bucket: bucket, Prefix: `repo/${key}` }));
        const ids = (versions.Versions ?? []).map((v) => ({ Key: v.Key!, VersionId: v.VersionId! }));
        const r = await client.send(new DeleteObjectsCommand({ Bucket: bucket, BypassGovernanceRetention: true, Delete: { Objects: ids } }));
        expect(r.Errors ?? [], key).toEqual([]);
      }

      const gc = await run(['gc', '--json']);
      expect(gc.status, gc.stderr).toBe(0);
      const report = JSON.parse(gc.stdout) as { deletedPacks: number; locked: { key: string }[] };
      // The first backup's index object is locked and goes on listing its packs: none of them may go.
      expect(report.deletedPacks).toBe(0);
      expect(report.locked.map((l) => l.key)).toEqual(firstIndex);
      for (const key of firstPacks) expect(await store.head(key), key).toBeDefined();
      const checked = await run(['check', '--read-data']);
      expect(checked.status, checked.stdout + checked.stderr).toBe(0);
      // A later backup of the first source finds its chunks through that index and stores nothing again.
      const again = await run(['backup', '--path', first, '--parent', 'none', '--json']);
      expect(again.status, again.stderr).toBe(0);
      expect((JSON.parse(again.stdout) as { stats: { newChunks: number } }).stats.newChunks).toBe(0);
      const out = join(work.dir, 'restored-first');
      expect((await run(['-q', 'restore', 'latest', '--to', out])).status).toBe(0);
      expect(await snapshot(out)).toEqual(await snapshot(first));
    } finally {
      store.destroy();
      client.destroy();
    }
  });

  it('a plain DELETE only hides a pack: check says so, info counts the noncurrent bytes, repair makes it current again', async () => {
    const bucket = await newBucket({ objectLock: true });
    const repo = `s3://${bucket}/repo`;
    const lockEnv = { ...env, COFFER_S3_OBJECT_LOCK: 'GOVERNANCE:1' };
    const run = (args: string[]) => coffer(['--repo', repo, ...args], lockEnv);
    expect((await run(['init'])).status).toBe(0);
    const src = await sourceWith('src-hidden', 3);
    expect((await run(['-q', 'backup', '--path', src])).status).toBe(0);
    const store = s3Store(bucket, { prefix: 'repo' });
    const client = s3Client();
    try {
      const [pack] = await collectList(store, 'data/');
      // What someone with plain delete rights does: no version named, so the bucket adds a delete marker.
      await client.send(new DeleteObjectCommand({ Bucket: bucket, Key: `repo/${pack!.key}` }));
      expect(await store.head(pack!.key)).toBeUndefined();

      const checked = await run(['check']);
      expect(checked.status).toBe(10);
      expect(checked.stdout + checked.stderr).toContain(pack!.key);
      expect(checked.stdout + checked.stderr).toMatch(/hidden by a delete marker/);
      expect(checked.stdout + checked.stderr).toMatch(/coffer repair/);

      const info = await run(['info', '--json']);
      expect(info.status, info.stderr).toBe(0);
      const noncurrent = (JSON.parse(info.stdout) as { noncurrent?: { versions: number; bytes: number; deleteMarkers: number } }).noncurrent;
      expect(noncurrent).toEqual({ versions: 1, bytes: pack!.size, deleteMarkers: 1 });

      const repaired = await run(['repair']);
      expect(repaired.status, repaired.stderr).toBe(0);
      expect(repaired.stdout).toContain(`made current again (it was hidden by a delete marker): ${pack!.key}`);
      expect((await store.head(pack!.key))?.size).toBe(pack!.size);
      const again = await run(['check', '--read-data']);
      expect(again.status, again.stdout + again.stderr).toBe(0);
      const out = join(work.dir, 'restored-hidden');
      expect((await run(['-q', 'restore', 'latest', '--to', out])).status).toBe(0);
      expect(await snapshot(out)).toEqual(await snapshot(src));
    } finally {
      store.destroy();
      client.destroy();
    }
  });

  it('bucket setup writes the lifecycle rules, keeps other rules and takes off a default retention; --check exits 30 until then', async () => {
    const bucket = await newBucket({ objectLock: true });
    const client = s3Client();
    try {
      await client.send(
        new PutObjectLockConfigurationCommand({ Bucket: bucket, ObjectLockConfiguration: { ObjectLockEnabled: 'Enabled', Rule: { DefaultRetention: { Mode: 'GOVERNANCE', Days: 2 } } } }),
      );
      const foreign = { ID: 'someone-elses', Status: 'Enabled' as const, Filter: { Prefix: 'other/' }, Expiration: { Days: 90 } };
      await client.send(new PutBucketLifecycleConfigurationCommand({ Bucket: bucket, LifecycleConfiguration: { Rules: [foreign] } }));
      const lockEnv = { ...env, COFFER_S3_OBJECT_LOCK: 'COMPLIANCE:7' };
      const run = (...args: string[]) => coffer(['--repo', `s3://${bucket}/repo`, 'bucket', 'setup', ...args], lockEnv);

      const before = await run('--check');
      expect(before.status).toBe(30);
      expect(before.stdout).toMatch(/needed: remove the bucket default retention \(GOVERNANCE 2 days\)/);
      expect(before.stdout).toMatch(/needed: add lifecycle rule coffer-noncurrent-versions: expire noncurrent versions 8 days/);
      expect(before.stdout).toMatch(/needed: add lifecycle rule coffer-incomplete-uploads/);

      const setup = await run();
      expect(setup.status, setup.stderr).toBe(0);
      const rules = (await client.send(new GetBucketLifecycleConfigurationCommand({ Bucket: bucket }))).Rules ?? [];
      expect(rules.map((r) => r.ID).sort()).toEqual(['coffer-incomplete-uploads', 'coffer-noncurrent-versions', 'someone-elses']);
      const noncurrent = rules.find((r) => r.ID === 'coffer-noncurrent-versions')!;
      expect(noncurrent.NoncurrentVersionExpiration?.NoncurrentDays).toBe(8);
      expect(noncurrent.Filter?.Prefix).toBe('repo/');
      expect(rules.find((r) => r.ID === 'coffer-incomplete-uploads')!.AbortIncompleteMultipartUpload?.DaysAfterInitiation).toBe(1);
      const lockConfig = await client.send(new GetObjectLockConfigurationCommand({ Bucket: bucket }));
      expect(lockConfig.ObjectLockConfiguration?.ObjectLockEnabled).toBe('Enabled');
      expect(lockConfig.ObjectLockConfiguration?.Rule?.DefaultRetention).toBeUndefined();

      const after = await run('--check');
      expect(after.status, after.stdout + after.stderr).toBe(0);
      expect(after.stdout).toMatch(/already set up/);

      // A lock asked for on a bucket made without Object Lock is refused, naming the bucket.
      const plain = await newBucket();
      const refused = await coffer(['--repo', `s3://${plain}/repo`, 'bucket', 'setup'], lockEnv);
      expect(refused.status).toBe(3);
      expect(refused.stderr).toContain(plain);
    } finally {
      client.destroy();
    }
  });
});
