/**
 * Starts one radosgw (Ceph's S3 server) for the whole test run and hands its
 * address and credentials to the tests. When it cannot start (not installed),
 * the reason is handed over instead, and every test that needs S3 fails with
 * it; the other tests still run.
 */
import type { TestProject } from 'vitest/node';
import { RadosgwSandbox } from '@coffer/verify';

export interface S3ServerInfo {
  endpoint: string;
  region: string;
  accessKeyId: string;
  secretAccessKey: string;
  sseKmsKeyId: string;
  extraStorageClass: string;
  /** The same server over TLS (a certificate for 127.0.0.1 from `caFile`, the sandbox's own CA). */
  tlsEndpoint: string;
  caFile: string;
}

declare module 'vitest' {
  export interface ProvidedContext {
    s3: S3ServerInfo | { error: string };
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  let server: RadosgwSandbox | undefined;
  try {
    server = await RadosgwSandbox.start();
    const { endpoint, region, accessKeyId, secretAccessKey, sseKmsKeyId, extraStorageClass, tlsEndpoint, caFile } = server;
    project.provide('s3', { endpoint, region, accessKeyId, secretAccessKey, sseKmsKeyId, extraStorageClass, tlsEndpoint, caFile });
  } catch (e) {
    project.provide('s3', { error: (e as Error).message });
  }
  return async () => {
    await server?.stop();
  };
}
