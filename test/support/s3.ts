/** The run's radosgw, as the tests see it: clients, fresh buckets, and the environment for `coffer`. */
import { randomBytes } from 'node:crypto';
import { CreateBucketCommand, PutBucketVersioningCommand, S3Client } from '@aws-sdk/client-s3';
import { inject } from 'vitest';
import { S3Store, type S3StoreOptions } from '@coffer/aws';
import type { S3ServerInfo } from './s3-global-setup.js';

export function s3Server(): S3ServerInfo {
  const info = inject('s3');
  if ('error' in info) throw new Error(`these tests need the S3 test server: ${info.error}`);
  return info;
}

export function s3Client(endpoint = s3Server().endpoint): S3Client {
  const s = s3Server();
  return new S3Client({ region: s.region, endpoint, forcePathStyle: true, credentials: { accessKeyId: s.accessKeyId, secretAccessKey: s.secretAccessKey } });
}

/** A new, empty bucket; with `objectLock`, created with Object Lock (and so versioning) on. */
export async function newBucket(options: { objectLock?: boolean; versioning?: boolean } = {}): Promise<string> {
  const name = `coffer-${randomBytes(6).toString('hex')}`;
  const client = s3Client();
  try {
    await client.send(new CreateBucketCommand({ Bucket: name, ...(options.objectLock ? { ObjectLockEnabledForBucket: true } : {}) }));
    if (options.versioning) await client.send(new PutBucketVersioningCommand({ Bucket: name, VersioningConfiguration: { Status: 'Enabled' } }));
  } finally {
    client.destroy();
  }
  return name;
}

export function s3Store(bucket: string, options: Partial<S3StoreOptions> = {}): S3Store {
  const s = s3Server();
  return new S3Store({ bucket, region: s.region, endpoint: s.endpoint, credentials: { accessKeyId: s.accessKeyId, secretAccessKey: s.secretAccessKey }, ...options });
}

/** Environment through which a `coffer` process reaches the S3 server (or `endpoint`, a proxy in front of it). */
export function s3Env(endpoint = s3Server().endpoint): Record<string, string> {
  const s = s3Server();
  return { AWS_ACCESS_KEY_ID: s.accessKeyId, AWS_SECRET_ACCESS_KEY: s.secretAccessKey, AWS_REGION: s.region, AWS_ENDPOINT_URL_S3: endpoint };
}
