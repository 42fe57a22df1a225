/**
 * Append-only credentials on radosgw: a bucket whose policy denies every
 * delete. Backups, WAL archiving, restores and check need no delete
 * permission (leases end with a create-only release record), so they work;
 * expire and gc, the only commands that delete, fail with the store's refusal
 * (exit 19) naming the object, and leave a repository that still checks and
 * restores.
 */
import { createHash } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { PutBucketPolicyCommand } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { coffer } from '../support/cli.js';
import { newBucket, s3Client, s3Env, s3Store } from '../support/s3.js';
import { pseudoRandom, scratch, snapshot } from '../support/tree.js';
import { fakeCluster, segment, segmentName } from '../support/wal.js';

describe('append-only credentials (deletes denied) on radosgw', () => {
  let work: { dir: string; cleanup: () => Promise<void> };
  let bucket: string;
  let env: Record<string, string>;
  const run = (...args: string[]) => coffer(['--repo', `s3://${bucket}/repo`, '-q', ...args], env);

  beforeAll(async () => {
    work = await scratch('coffer-append-only-');
    bucket = await newBucket();
    const client = s3Client();
    try {
      const policy = {
        Version: '2012-10-17',
        Statement: [{ Effect: 'Deny', Principal: '*', Action: ['s3:DeleteObject', 's3:DeleteObjectVersion'], Resource: [`arn:aws:s3:::${bucket}/*`] }],
      };
      await client.send(new PutBucketPolicyCommand({ Bucket: bucket, Policy: JSON.stringify(policy) }));
    } finally {
      client.destroy();
    }
    const keyFile = join(work.dir, 'key');
    await writeFile(keyFile, pseudoRandom(32, 7).toString('base64'), { mode: 0o600 });
    env = { ...s3Env(), COFFER_KEY_FILE: keyFile };
  });
  afterAll(async () => work.cleanup());

  it('backs up, archives WAL, restores and checks; expire and gc fail with the refusal and lose nothing', async () => {
    // The policy really denies deletes to these credentials.
    const probe = s3Store(bucket);
    await probe.put('probe', Buffer.from('x'));
    await expect(probe.delete('probe')).rejects.toThrow(/refused access/);

    expect((await run('init')).status).toBe(0);
    const src = join(work.dir, 'src');
    await mkdir(src);
    await writeFile(join(src, 'a.bin'), pseudoRandom(300_000, 1));
    const first = await run('backup', '--path', src);
    expect(first.status, first.stderr).toBe(0);
    await writeFile(join(src, 'a.bin'), pseudoRandom(300_000, 2));
    expect((await run('backup', '--path', src)).status).toBe(0);

    const sysid = 7_400_000_000_000_000_001n;
    const pgdata = await fakeCluster(join(work.dir, 'pgdata'), sysid);
    const wal = join(pgdata, 'pg_wal', segmentName(1));
    await writeFile(wal, segment(sysid, 1));
    const pushed = await run('wal-push', wal);
    expect(pushed.status, pushed.stderr).toBe(0);

    const out = join(work.dir, 'out');
    expect((await run('restore', 'latest', '--to', out)).status).toBe(0);
    expect(await snapshot(out)).toEqual(await snapshot(src));
    expect((await run('check', '--read-data')).status).toBe(0);

    const expired = await run('expire', '--keep-min', '1');
    expect(expired.status).toBe(19);
    expect(expired.stderr).toMatch(/store refused access to (catalogue|backups)\//);

    // An unreferenced pack for gc to find: it must try to delete it, and be refused.
    const orphan = pseudoRandom(4096, 3);
    const sha = createHash('sha256').update(orphan).digest('hex');
    await probe.put(`repo/data/${sha.slice(0, 2)}/${sha}`, orphan);
    const gc = await run('gc');
    expect(gc.status).toBe(19);
    expect(gc.stderr).toMatch(/store refused access to /);

    const after = await run('check', '--read-data');
    expect(after.status, after.stdout + after.stderr).toBe(0);
    const again = join(work.dir, 'again');
    expect((await run('restore', 'latest', '--to', again)).status).toBe(0);
    expect(await snapshot(again)).toEqual(await snapshot(src));
  });
});
