/**
 * Backup and restore against a real S3 server (radosgw on loopback, started
 * here): throughput, and requests per GiB — what S3 bills and what throttling
 * counts. The same generated tree as the local figures; each step in its own
 * process, inputs warmed and `sync` before it.
 */
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import { LocalKeyProvider, Repository } from '@coffer/engine';
import { S3Store } from '@coffer/aws';
import { RadosgwSandbox, radosgwMissing } from '@coffer/verify';
import { step, warm, type TreeStep } from './tree.js';

export interface S3Figures {
  bytes: number;
  backup: TreeStep;
  restore: TreeStep;
  /** Stored bytes in the bucket after the backup. */
  storedBytes: number;
}

export async function s3Figures(workDir: string, src: string, bytes: number): Promise<S3Figures | { missing: string }> {
  const missing = radosgwMissing();
  if (missing) return { missing };
  const server = await RadosgwSandbox.start({ memoryBytes: Math.max(4 * 2 ** 30, bytes * 2) });
  try {
    const credentials = { accessKeyId: server.accessKeyId, secretAccessKey: server.secretAccessKey };
    const client = new S3Client({ region: server.region, endpoint: server.endpoint, forcePathStyle: true, credentials });
    await client.send(new CreateBucketCommand({ Bucket: 'coffer-bench' }));
    client.destroy();
    const store = new S3Store({ bucket: 'coffer-bench', prefix: 'repo', region: server.region, endpoint: server.endpoint, credentials });
    await Repository.init(store, LocalKeyProvider.fromPassphrase('benchmark'));
    const env = server.awsEnv;
    await warm(src);
    const backup = await step('backup', 's3://coffer-bench/repo', src, env);
    const out = join(workDir, 's3-restore');
    await rm(out, { recursive: true, force: true });
    const restore = await step('restore', 's3://coffer-bench/repo', out, env);
    await rm(out, { recursive: true, force: true });
    let storedBytes = 0;
    for await (const o of store.list('')) storedBytes += o.size;
    store.destroy();
    return { bytes, backup, restore, storedBytes };
  } finally {
    await server.stop();
  }
}
