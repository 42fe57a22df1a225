import { randomBytes } from 'node:crypto';
import { DeleteObjectCommand, GetBucketVersioningCommand, HeadObjectCommand, ListMultipartUploadsCommand, ListObjectVersionsCommand, PutBucketPolicyCommand } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MissingObjectError, ObjectConflictError, StoreAccessDeniedError, StoreUnavailableError, collectList } from '@coffer/engine';
import { describeObjectStore } from '@coffer/engine/testing';
import { FaultProxy, type Fault } from '../../../test/support/fault-proxy.js';
import { newBucket, s3Client, s3Server, s3Store } from '../../../test/support/s3.js';

const MiB = 1024 * 1024;
let conformanceBucket: string | undefined;

describeObjectStore('S3Store on radosgw', async () => {
  conformanceBucket ??= await newBucket();
  const store = s3Store(conformanceBucket, { prefix: `conformance/${randomBytes(4).toString('hex')}` });
  return { store, cleanup: async () => store.destroy() };
});

describeObjectStore('S3Store on radosgw, versioned bucket, at the bucket root', async () => {
  const store = s3Store(await newBucket({ versioning: true }));
  return { store, cleanup: async () => store.destroy() };
});

describe('S3Store specifics', () => {
  let bucket: string;
  beforeAll(async () => {
    bucket = await newBucket();
  });

  it('large objects go up in parts, in parallel; create-only holds for them too and no upload is left behind', async () => {
    const store = s3Store(bucket, { prefix: 'multipart', multipartThreshold: 6 * MiB, partSize: 5 * MiB });
    const data = randomBytes(13 * MiB);
    expect(await store.put('data/aa/big', data)).toBe('created');
    expect(store.stats.byOperation.UploadPart).toBe(3);
    expect(store.stats.byOperation.PutObject ?? 0).toBe(0);
    expect(Buffer.from(await store.get('data/aa/big')).equals(data)).toBe(true);
    expect(Buffer.from(await store.get('data/aa/big', { offset: 5 * MiB - 10, length: 20 })).equals(data.subarray(5 * MiB - 10, 5 * MiB + 10))).toBe(true);
    expect(await store.put('data/aa/big', data)).toBe('existed');
    const other = Buffer.from(data);
    other[7 * MiB] = other[7 * MiB]! ^ 1;
    await expect(store.put('data/aa/big', other)).rejects.toBeInstanceOf(ObjectConflictError);
    expect(Buffer.from(await store.get('data/aa/big')).equals(data)).toBe(true);
    const client = s3Client();
    const uploads = await client.send(new ListMultipartUploadsCommand({ Bucket: bucket }));
    expect(uploads.Uploads ?? []).toEqual([]);
    client.destroy();
    store.destroy();
  });

  it('storage class per kind of object, SSE-KMS and Object Lock settings reach the server', async () => {
    const s = s3Server();
    const locked = await newBucket({ objectLock: true });
    const store = s3Store(locked, { storageClass: { packs: s.extraStorageClass as never }, sseKmsKeyId: s.sseKmsKeyId, objectLock: { mode: 'GOVERNANCE', days: 3 } });
    await store.put('data/ab/pack', Buffer.from('pack bytes'));
    await store.put('index/idx', Buffer.from('index bytes'));
    const client = s3Client();
    const pack = await client.send(new HeadObjectCommand({ Bucket: locked, Key: 'data/ab/pack' }));
    const index = await client.send(new HeadObjectCommand({ Bucket: locked, Key: 'index/idx' }));
    expect(pack.StorageClass).toBe(s.extraStorageClass);
    expect(index.StorageClass ?? 'STANDARD').toBe('STANDARD');
    for (const h of [pack, index]) {
      expect(h.ServerSideEncryption).toBe('aws:kms');
      expect(h.SSEKMSKeyId).toBe(s.sseKmsKeyId);
      expect(h.ObjectLockMode).toBe('GOVERNANCE');
      const days = (h.ObjectLockRetainUntilDate!.getTime() - Date.now()) / 86_400_000;
      expect(days).toBeGreaterThan(2.9);
      expect(days).toBeLessThan(3.1);
    }
    expect(Buffer.from(await store.get('index/idx', { offset: 6, length: 5 })).toString()).toBe('bytes');
    client.destroy();
    store.destroy();
  });

  it('under Object Lock, a locked object can be neither deleted nor replaced, and a delete by hand only hides it behind a marker', async () => {
    const locked = await newBucket({ objectLock: true });
    const store = s3Store(locked, { objectLock: { mode: 'COMPLIANCE', days: 1 } });
    const data = Buffer.from('immutable pack');
    await store.put('data/cd/pack', data);
    const denied = await store.delete('data/cd/pack').catch((e: unknown) => e);
    expect(denied).toBeInstanceOf(StoreAccessDeniedError);
    expect((denied as StoreAccessDeniedError).key).toBe('data/cd/pack');
    await expect(store.put('data/cd/pack', Buffer.from('replacement!!!'))).rejects.toBeInstanceOf(ObjectConflictError);
    const client = s3Client();
    const versions = await client.send(new ListObjectVersionsCommand({ Bucket: locked, Prefix: 'data/cd/pack' }));
    expect(versions.Versions).toHaveLength(1);
    await expect(client.send(new DeleteObjectCommand({ Bucket: locked, Key: 'data/cd/pack', VersionId: versions.Versions![0]!.VersionId }))).rejects.toMatchObject({ name: 'AccessDenied' });
    expect(Buffer.from(await store.get('data/cd/pack')).equals(data)).toBe(true);
    // A plain DELETE by hand adds a delete marker; the locked version stays, and removing the marker brings it back.
    const marker = await client.send(new DeleteObjectCommand({ Bucket: locked, Key: 'data/cd/pack' }));
    expect(marker.DeleteMarker).toBe(true);
    expect(await store.head('data/cd/pack')).toBeUndefined();
    await client.send(new DeleteObjectCommand({ Bucket: locked, Key: 'data/cd/pack', VersionId: marker.VersionId }));
    expect(Buffer.from(await store.get('data/cd/pack')).equals(data)).toBe(true);
    client.destroy();
    store.destroy();
  });

  it('a policy that denies GetBucketVersioning does not stop writes', async () => {
    const denied = await newBucket();
    const client = s3Client();
    const policy = { Version: '2012-10-17', Statement: [{ Effect: 'Deny', Principal: '*', Action: 's3:GetBucketVersioning', Resource: `arn:aws:s3:::${denied}` }] };
    await client.send(new PutBucketPolicyCommand({ Bucket: denied, Policy: JSON.stringify(policy) }));
    await expect(client.send(new GetBucketVersioningCommand({ Bucket: denied }))).rejects.toMatchObject({ $metadata: { httpStatusCode: 403 } });
    const store = s3Store(denied);
    expect(await store.put('index/x', Buffer.from('x'))).toBe('created');
    expect(await store.put('index/x', Buffer.from('x'))).toBe('existed');
    await store.delete('index/x');
    expect(await store.head('index/x')).toBeUndefined();
    client.destroy();
    store.destroy();
  });

  it('delete on a versioned bucket removes every version, so nothing hides behind a delete marker', async () => {
    const versioned = await newBucket({ versioning: true });
    const store = s3Store(versioned);
    await store.put('locks/a', Buffer.from('1'));
    await store.put('locks/b', Buffer.from('2'));
    await store.deleteMany(['locks/a', 'locks/b', 'locks/never-there']);
    const client = s3Client();
    const versions = await client.send(new ListObjectVersionsCommand({ Bucket: versioned, Prefix: 'locks/' }));
    expect([...(versions.Versions ?? []), ...(versions.DeleteMarkers ?? [])]).toEqual([]);
    client.destroy();
    store.destroy();
  });
});

describe('S3Store through faults', () => {
  let proxy: FaultProxy;
  let bucket: string;
  beforeAll(async () => {
    bucket = await newBucket();
    proxy = await FaultProxy.start(s3Server().endpoint);
  });
  afterAll(async () => {
    await proxy?.stop();
  });

  it('a body damaged on the way is refused by the server and sent again', async () => {
    proxy.failureRate = 1;
    proxy.faults = ['corrupt-body'];
    proxy.only = (req) => req.method === 'PUT';
    const store = s3Store(bucket, { endpoint: proxy.endpoint, prefix: 'corrupt', retry: { attempts: 3, baseDelayMs: 10 } });
    const data = randomBytes(100_000);
    // Every PUT is damaged: the server must refuse each one, and nothing is stored.
    await expect(store.put('data/ee/x', data)).rejects.toBeInstanceOf(StoreUnavailableError);
    expect(proxy.upstreamStatuses[400]).toBe(3);
    expect(await s3Store(bucket, { prefix: 'corrupt' }).head('data/ee/x')).toBeUndefined();
    // Half are damaged: the retries get it through, intact.
    proxy.failureRate = 0.5;
    const patient = s3Store(bucket, { endpoint: proxy.endpoint, prefix: 'corrupt', retry: { attempts: 20, baseDelayMs: 10 } });
    for (let i = 0; i < 10; i++) await patient.put(`data/ee/y${i}`, data);
    for (let i = 0; i < 10; i++) expect(Buffer.from(await patient.get(`data/ee/y${i}`)).equals(data)).toBe(true);
    expect(patient.stats.retries).toBeGreaterThan(0);
    proxy.failureRate = 0;
    proxy.only = undefined;
    store.destroy();
    patient.destroy();
  });

  it('with 20% of requests failing in every way, puts, gets, lists and deletes all complete with the right bytes', async () => {
    proxy.failureRate = 0.2;
    proxy.faults = ['error-before', 'error-after', 'slowdown', 'reset-response', 'reset-request', 'slow', 'corrupt-body'] satisfies Fault[];
    proxy.slowMs = 300;
    const store = s3Store(bucket, { endpoint: proxy.endpoint, prefix: 'faults', retry: { baseDelayMs: 10, maxDelayMs: 200 }, multipartThreshold: 6 * MiB, partSize: 5 * MiB });
    const objects = Array.from({ length: 60 }, (_, i) => ({ key: `data/${String(i % 7).padStart(2, '0')}/o${i}`, data: randomBytes(1000 + i * 3000) }));
    const outcomes = await Promise.all(objects.map((o) => store.put(o.key, o.data)));
    // A lost acknowledgement turns "created" into "existed" on the retry; both mean stored.
    for (const o of outcomes) expect(['created', 'existed']).toContain(o);
    const big = randomBytes(12 * MiB);
    await store.put('data/zz/big', big);
    for (const o of objects) expect(Buffer.from(await store.get(o.key)).equals(o.data)).toBe(true);
    expect(Buffer.from(await store.get('data/zz/big')).equals(big)).toBe(true);
    expect((await collectList(store, 'data/')).length).toBe(61);
    await Promise.all(objects.slice(0, 20).map((o) => store.delete(o.key)));
    expect((await collectList(store, 'data/')).length).toBe(41);
    expect(proxy.injected).toBeGreaterThan(10);
    expect(store.stats.retries).toBeGreaterThan(10);
    proxy.failureRate = 0;
    store.destroy();
  });

  it('a store that is gone for good fails with a clear, typed error naming the key', async () => {
    proxy.down = true;
    const store = s3Store(bucket, { endpoint: proxy.endpoint, prefix: 'down', retry: { attempts: 4, baseDelayMs: 10 } });
    const put = await store.put('index/abc', Buffer.from('x')).catch((e: unknown) => e);
    expect(put).toBeInstanceOf(StoreUnavailableError);
    expect((put as Error).message).toMatch(/index\/abc.*s3:\/\/coffer-[0-9a-f]+\/down.*gave up after 4 tries/);
    await expect(store.get('index/abc')).rejects.toBeInstanceOf(StoreUnavailableError);
    proxy.down = false;
    await expect(store.get('index/abc')).rejects.toBeInstanceOf(MissingObjectError);
    store.destroy();
  });
});
