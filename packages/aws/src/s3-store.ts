/**
 * `S3Store`: the engine's `ObjectStore` contract on S3 and S3-compatible
 * servers.
 *
 * - Create-only writes: `PutObject` with `If-None-Match: *`. A 412 means the
 *   key exists; the stored bytes are then read back and compared, so a retried
 *   or concurrent put of the same content resolves `'existed'` and other bytes
 *   reject with `ObjectConflictError`, leaving the original in place.
 * - Versioned buckets (Object Lock needs one): radosgw ignores `If-None-Match`
 *   there and adds a version instead. So a put looks first (HEAD), and after
 *   writing lists the key's versions: the oldest is the object, and a later one
 *   of ours is judged against it and removed again (see `settleVersions`).
 *   That costs two requests more per object on versioned buckets only.
 * - Every body carries Content-MD5 and an `x-amz-checksum-sha256`, so a server
 *   refuses a body damaged in transit (and the refusal is retried) instead of
 *   storing it.
 * - Objects at or above `multipartThreshold` go up as multipart uploads, parts
 *   in parallel. A HEAD first keeps create-only semantics on servers that
 *   ignore `If-None-Match` on `CompleteMultipartUpload`; only packs get that
 *   large, and they are named by their content, so the remaining race is two
 *   writers storing the same bytes.
 * - Each request (and the reading of its response body) runs under a bounded
 *   number of connections and is retried with backoff (see `retry.ts`).
 * - `delete` removes every version of a key on a versioned bucket, so deleting
 *   an object under Object Lock retention fails instead of hiding it behind a
 *   delete marker.
 * - With `objectLock`, each lockable object is written with its own retention
 *   (not the bucket's default); `versions` reads and extends retention and
 *   finds objects someone else's plain DELETE hid (`s3-versions.ts`).
 */
import { createHash } from 'node:crypto';
import { Agent as HttpAgent } from 'node:http';
import { Agent as HttpsAgent } from 'node:https';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  DeleteObjectsCommand,
  GetBucketVersioningCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  UploadPartCommand,
  type ObjectIdentifier,
  type ObjectLockMode,
  type ServerSideEncryption,
  type StorageClass,
} from '@aws-sdk/client-s3';
import { NodeHttpHandler } from '@smithy/node-http-handler';
import type { AwsCredentialIdentity, AwsCredentialIdentityProvider } from '@smithy/types';
import {
  assertValidKey,
  bytesEqual,
  checkRange,
  InvalidArgumentError,
  isCofferError,
  isLockable,
  MissingObjectError,
  ObjectConflictError,
  StoreAccessDeniedError,
  StoreUnavailableError,
  type ByteRange,
  type LockPolicy,
  type ObjectInfo,
  type ObjectStore,
  type PutOutcome,
  type StoreProperties,
} from '@coffer/engine';
import pLimit, { type LimitFunction } from 'p-limit';
import { describeAwsError, httpStatusOf, isRetryable, withRetry, type RetryOptions } from './retry.js';
import { S3Versions } from './s3-versions.js';

/** Object Lock retention Coffer sets on what it writes: a mode and a period in days from writing. */
export type ObjectLockRetention = LockPolicy;

export interface S3StoreOptions {
  bucket: string;
  /** Key prefix inside the bucket, without leading or trailing slash. */
  prefix?: string;
  region?: string;
  /** S3-compatible endpoint URL (default: AWS, or the SDK's `AWS_ENDPOINT_URL_S3`). */
  endpoint?: string;
  /** Path-style addressing (`endpoint/bucket/key`); default: on when `endpoint` is given. */
  forcePathStyle?: boolean;
  /** Default: the AWS SDK's standard credential chain (environment, profiles, instance roles). */
  credentials?: AwsCredentialIdentity | AwsCredentialIdentityProvider;
  /** Storage class of packs (`data/`) and of everything else. */
  storageClass?: { packs?: StorageClass; metadata?: StorageClass };
  /** Server-side encryption with this AWS KMS key (on top of Coffer's own encryption). */
  sseKmsKeyId?: string;
  /**
   * Object Lock retention set on each object written that must outlive its writer (`isLockable`: packs,
   * index, manifests, summaries, WAL, stanza and key records, the config), object by object; leases and
   * the other records Coffer removes in its normal course are written without. The bucket must have
   * Object Lock enabled, and no default retention (which would lock leases too).
   */
  objectLock?: ObjectLockRetention;
  /** Requests in flight at once (default 16). */
  connections?: number;
  /** Objects this size and larger are uploaded in parts (default 64 MiB). */
  multipartThreshold?: number;
  /** Part size for multipart uploads (default 16 MiB; S3's minimum is 5 MiB). */
  partSize?: number;
  /** Give up on a request that has not completed in this many ms (default 120 s); it is then retried. */
  requestTimeoutMs?: number;
  retry?: RetryOptions;
  /** Whether the bucket keeps versions; detected with GetBucketVersioning when not given. */
  versioned?: boolean;
}

/** Requests made, for benchmarks and metrics. */
export interface S3RequestStats {
  requests: number;
  byOperation: Record<string, number>;
  retries: number;
  bytesSent: number;
  bytesReceived: number;
}

const MiB = 1024 * 1024;

export class S3Store implements ObjectStore {
  readonly properties: StoreProperties;
  readonly bucket: string;
  readonly prefix: string;
  readonly client: S3Client;
  readonly stats: S3RequestStats = { requests: 0, byOperation: {}, retries: 0, bytesSent: 0, bytesReceived: 0 };
  private readonly options: S3StoreOptions;
  private readonly limit: LimitFunction;
  private readonly multipartThreshold: number;
  private readonly partSize: number;
  private versioned: Promise<boolean> | undefined;
  /** Object Lock retention and versions (delete markers, noncurrent bytes). */
  readonly versions: S3Versions;

  constructor(options: S3StoreOptions) {
    for (const cls of [options.storageClass?.packs, options.storageClass?.metadata]) {
      // Objects in these classes must be restored (thawed) before every read: no repository can live there.
      if (cls === 'GLACIER' || cls === 'DEEP_ARCHIVE') {
        throw new InvalidArgumentError('storage class', `${cls} objects must be restored before they can be read, which Coffer does not do; use an instant-retrieval class (STANDARD, STANDARD_IA, ONEZONE_IA, INTELLIGENT_TIERING, GLACIER_IR)`);
      }
    }
    const connections = options.connections ?? 16;
    this.options = options;
    this.bucket = options.bucket;
    this.prefix = (options.prefix ?? '').replace(/^\/+|\/+$/g, '');
    this.partSize = options.partSize ?? 16 * MiB;
    this.multipartThreshold = options.multipartThreshold ?? 64 * MiB;
    if (this.partSize < 5 * MiB) throw new InvalidArgumentError('S3 part size', `must be at least 5 MiB, got ${this.partSize}`);
    if (options.objectLock && (!Number.isInteger(options.objectLock.days) || options.objectLock.days < 1)) {
      throw new InvalidArgumentError('Object Lock retention', `days must be a positive integer, got ${options.objectLock.days}`);
    }
    this.limit = pLimit(connections);
    this.properties = { connections, location: `s3://${this.bucket}${this.prefix ? '/' + this.prefix : ''}` };
    const agent = { keepAlive: true, maxSockets: connections };
    this.client = new S3Client({
      ...(options.region ? { region: options.region } : {}),
      ...(options.endpoint ? { endpoint: options.endpoint } : {}),
      forcePathStyle: options.forcePathStyle ?? options.endpoint !== undefined,
      ...(options.credentials ? { credentials: options.credentials } : {}),
      maxAttempts: 1,
      // Checksums are computed here, on whole buffers; the SDK's streaming trailers are not understood by every S3 server.
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
      requestHandler: new NodeHttpHandler({
        httpAgent: new HttpAgent(agent),
        httpsAgent: new HttpsAgent(agent),
        connectionTimeout: 10_000,
        requestTimeout: options.requestTimeoutMs ?? 120_000,
      }),
    });
    this.versions = new S3Versions(
      {
        client: this.client,
        bucket: this.bucket,
        base: this.prefix ? `${this.prefix}/` : '',
        fullKey: (key) => this.fullKey(key),
        isVersioned: () => this.isVersioned().catch((e: unknown) => Promise.reject(this.fail(this.properties.location, e))),
        request: (op, fn) => this.request(op, fn),
        fail: (key, e) => this.fail(key, e),
        get: (key, versionId) => this.get(key, undefined, versionId),
      },
      options.objectLock,
    );
  }

  private fullKey(key: string): string {
    assertValidKey(key);
    return this.prefix ? `${this.prefix}/${key}` : key;
  }

  /** Runs one request under the connection limit, retrying faults. */
  private request<T>(op: string, fn: () => Promise<T>): Promise<T> {
    return withRetry(
      () =>
        this.limit(() => {
          this.stats.requests++;
          this.stats.byOperation[op] = (this.stats.byOperation[op] ?? 0) + 1;
          return fn();
        }),
      this.options.retry,
      () => this.stats.retries++,
    );
  }

  /**
   * Runs one request that is not about an object (bucket configuration) under this store's connection
   * limit and retries; a failure comes back as a Coffer error naming `what`.
   */
  async run<T>(op: string, what: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await this.request(op, fn);
    } catch (e) {
      throw this.fail(what, e);
    }
  }

  /** An AWS failure as a Coffer error naming the key. */
  private fail(key: string, e: unknown): Error {
    if (isCofferError(e)) return e;
    const status = httpStatusOf(e);
    const what = describeAwsError(e);
    if (status === 404 || (e as { name?: string }).name === 'NoSuchKey') return new MissingObjectError(key);
    if (status === 403) return new StoreAccessDeniedError(key, `${this.properties.location}: ${what}`, { cause: e });
    const after = isRetryable(e) ? ` (gave up after ${this.options.retry?.attempts ?? 10} tries)` : '';
    return new StoreUnavailableError(key, `${this.properties.location}: ${what}${after}`, { cause: e });
  }

  private writeParams(key: string): {
    StorageClass?: StorageClass;
    ServerSideEncryption?: ServerSideEncryption;
    SSEKMSKeyId?: string;
    ObjectLockMode?: ObjectLockMode;
    ObjectLockRetainUntilDate?: Date;
  } {
    const o = this.options;
    const storageClass = key.startsWith('data/') ? o.storageClass?.packs : o.storageClass?.metadata;
    return {
      ...(storageClass ? { StorageClass: storageClass } : {}),
      ...(o.sseKmsKeyId ? { ServerSideEncryption: 'aws:kms', SSEKMSKeyId: o.sseKmsKeyId } : {}),
      ...(o.objectLock && isLockable(key) ? { ObjectLockMode: o.objectLock.mode, ObjectLockRetainUntilDate: new Date(Date.now() + o.objectLock.days * 86_400_000) } : {}),
    };
  }

  async put(key: string, data: Uint8Array): Promise<PutOutcome> {
    const Key = this.fullKey(key);
    const multipart = data.length >= this.multipartThreshold;
    const versioned = await this.isVersioned().catch((e: unknown) => Promise.reject(this.fail(key, e)));
    // Some servers (radosgw among them) ignore If-None-Match on versioned buckets, and a multipart
    // upload is costly to repeat: look first.
    if ((versioned || multipart) && (await this.head(key))) return this.compareExisting(key, data);
    let versionId: string | undefined;
    try {
      versionId = multipart ? await this.putMultipart(key, Key, data) : await this.putSingle(key, Key, data);
    } catch (e) {
      if (isPreconditionFailed(e)) return this.compareExisting(key, data);
      throw this.fail(key, e);
    }
    return versioned ? this.settleVersions(key, Key, data, versionId) : 'created';
  }

  private async putSingle(key: string, Key: string, data: Uint8Array): Promise<string | undefined> {
    const ContentMD5 = digest('md5', data);
    const ChecksumSHA256 = digest('sha256', data);
    return this.request('PutObject', async () => {
      const r = await this.client.send(
        new PutObjectCommand({ Bucket: this.bucket, Key, Body: data, ContentLength: data.length, IfNoneMatch: '*', ContentMD5, ChecksumSHA256, ...this.writeParams(key) }),
      );
      this.stats.bytesSent += data.length;
      return r.VersionId;
    });
  }

  private async putMultipart(key: string, Key: string, data: Uint8Array): Promise<string | undefined> {
    let uploadId: string | undefined;
    try {
      const created = await this.request('CreateMultipartUpload', () =>
        this.client.send(new CreateMultipartUploadCommand({ Bucket: this.bucket, Key, ...this.writeParams(key) })),
      );
      uploadId = created.UploadId;
      if (!uploadId) throw new StoreUnavailableError(key, 'CreateMultipartUpload returned no upload id');
      const count = Math.ceil(data.length / this.partSize);
      const parts = await Promise.all(
        Array.from({ length: count }, (_, i) => {
          const body = data.subarray(i * this.partSize, Math.min(data.length, (i + 1) * this.partSize));
          return this.request('UploadPart', async () => {
            const r = await this.client.send(
              new UploadPartCommand({ Bucket: this.bucket, Key, UploadId: uploadId, PartNumber: i + 1, Body: body, ContentLength: body.length, ContentMD5: digest('md5', body) }),
            );
            this.stats.bytesSent += body.length;
            return { PartNumber: i + 1, ETag: r.ETag };
          });
        }),
      );
      const versionId = await this.request('CompleteMultipartUpload', async () => {
        try {
          const r = await this.client.send(
            new CompleteMultipartUploadCommand({ Bucket: this.bucket, Key, UploadId: uploadId, MultipartUpload: { Parts: parts }, IfNoneMatch: '*' }),
          );
          return r.VersionId;
        } catch (e) {
          // A completion whose answer was lost leaves the upload gone and the object in place.
          if ((e as { name?: string }).name === 'NoSuchUpload' && (await this.head(key))) return undefined;
          throw e;
        }
      });
      uploadId = undefined;
      return versionId;
    } finally {
      if (uploadId) {
        const UploadId = uploadId;
        await this.request('AbortMultipartUpload', () => this.client.send(new AbortMultipartUploadCommand({ Bucket: this.bucket, Key, UploadId }))).catch(() => undefined);
      }
    }
  }

  /**
   * On a versioned bucket, concurrent creates that the server did not refuse
   * leave several versions: the oldest one is the object. A later version of
   * ours is removed again (when retention allows), and the outcome is judged
   * against the oldest, as if the server had refused our write.
   */
  private async settleVersions(key: string, Key: string, data: Uint8Array, ours: string | undefined): Promise<PutOutcome> {
    const versions = await this.versions.versionIds(key, false);
    const oldest = versions[versions.length - 1];
    if (!oldest || versions.length === 1 || oldest === ours) return 'created';
    const existing = await this.get(key, undefined, oldest);
    if (ours) {
      await this.request('DeleteObjects', () => this.client.send(new DeleteObjectsCommand({ Bucket: this.bucket, Delete: { Objects: [{ Key, VersionId: ours }], Quiet: true } }))).catch(() => undefined);
    }
    if (bytesEqual(existing, data)) return 'existed';
    throw new ObjectConflictError(key);
  }

  /** After a refused create: same bytes is success, other bytes a conflict. */
  private async compareExisting(key: string, data: Uint8Array): Promise<PutOutcome> {
    const existing = await this.get(key);
    if (bytesEqual(existing, data)) return 'existed';
    throw new ObjectConflictError(key);
  }

  async get(key: string, range?: ByteRange, versionId?: string): Promise<Uint8Array> {
    const Key = this.fullKey(key);
    if (range && range.length === 0) {
      const info = await this.head(key);
      if (!info) throw new MissingObjectError(key);
      checkRange(key, info.size, range);
      return new Uint8Array(0);
    }
    if (range) checkRange(key, Number.MAX_SAFE_INTEGER, range);
    try {
      return await this.request('GetObject', async () => {
        const r = await this.client.send(
          new GetObjectCommand({ Bucket: this.bucket, Key, ...(versionId ? { VersionId: versionId } : {}), ...(range ? { Range: `bytes=${range.offset}-${range.offset + range.length - 1}` } : {}) }),
        );
        const bytes = r.Body ? await r.Body.transformToByteArray() : new Uint8Array(0);
        if (r.ContentLength !== undefined && bytes.length !== r.ContentLength) {
          throw Object.assign(new Error(`body cut short: ${bytes.length} of ${r.ContentLength} bytes`), { name: 'TruncatedBody' });
        }
        this.stats.bytesReceived += bytes.length;
        if (range && bytes.length !== range.length) {
          const total = Number(/\/(\d+)$/.exec(r.ContentRange ?? '')?.[1] ?? bytes.length);
          checkRange(key, total, range);
        }
        return bytes;
      });
    } catch (e) {
      if (httpStatusOf(e) === 416 && range) {
        const info = await this.head(key);
        if (!info) throw new MissingObjectError(key);
        checkRange(key, info.size, range);
      }
      throw this.fail(key, e);
    }
  }

  async head(key: string): Promise<ObjectInfo | undefined> {
    const Key = this.fullKey(key);
    try {
      const r = await this.request('HeadObject', () => this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key })));
      return { key, size: r.ContentLength ?? 0, ...(r.LastModified ? { modified: r.LastModified } : {}) };
    } catch (e) {
      if (httpStatusOf(e) === 404) return undefined;
      throw this.fail(key, e);
    }
  }

  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    const base = this.prefix ? `${this.prefix}/` : '';
    let token: string | undefined;
    do {
      let page;
      try {
        page = await this.request('ListObjectsV2', () =>
          this.client.send(new ListObjectsV2Command({ Bucket: this.bucket, Prefix: base + prefix, MaxKeys: 1000, ...(token ? { ContinuationToken: token } : {}) })),
        );
      } catch (e) {
        throw this.fail(prefix || '/', e);
      }
      for (const o of page.Contents ?? []) {
        if (!o.Key?.startsWith(base)) continue;
        const key = o.Key.slice(base.length);
        if (key && !key.endsWith('/')) yield { key, size: o.Size ?? 0, ...(o.LastModified ? { modified: o.LastModified } : {}) };
      }
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
  }

  async delete(key: string): Promise<void> {
    await this.deleteMany([key]);
  }

  /**
   * Removes `keys` with batched `DeleteObjects` (1,000 a request); on a
   * versioned bucket, every version and delete marker of each key. Absent
   * keys are fine; a key the server refuses to delete (Object Lock retention,
   * permissions) rejects with `StoreAccessDeniedError` naming it.
   */
  async deleteMany(keys: readonly string[]): Promise<void> {
    const targets: { key: string; id: ObjectIdentifier }[] = [];
    const versioned = await this.isVersioned().catch((e: unknown) => Promise.reject(this.fail(keys[0] ?? this.properties.location, e)));
    for (const key of keys) {
      const Key = this.fullKey(key);
      if (!versioned) targets.push({ key, id: { Key } });
      else for (const VersionId of await this.versions.versionIds(key, true)) targets.push({ key, id: { Key, VersionId } });
    }
    for (let i = 0; i < targets.length; i += 1000) {
      const batch = targets.slice(i, i + 1000);
      let result;
      try {
        result = await this.request('DeleteObjects', () =>
          this.client.send(new DeleteObjectsCommand({ Bucket: this.bucket, Delete: { Objects: batch.map((t) => t.id), Quiet: true } })),
        );
      } catch (e) {
        throw this.fail(batch[0]!.key, e);
      }
      const errors = (result.Errors ?? []).filter((err) => err.Code !== 'NoSuchKey' && err.Code !== 'NoSuchVersion');
      if (errors.length > 0) {
        const err = errors[0]!;
        const key = batch.find((t) => t.id.Key === err.Key)?.key ?? err.Key ?? '?';
        const detail = `${this.properties.location}: ${err.Code}: ${err.Message ?? ''}${errors.length > 1 ? ` (and ${errors.length - 1} more)` : ''}`;
        throw err.Code === 'AccessDenied' ? new StoreAccessDeniedError(key, detail) : new StoreUnavailableError(key, detail);
      }
    }
  }

  private isVersioned(): Promise<boolean> {
    if (this.options.versioned !== undefined) return Promise.resolve(this.options.versioned);
    this.versioned ??= this.request('GetBucketVersioning', () => this.client.send(new GetBucketVersioningCommand({ Bucket: this.bucket })))
      .then((r) => r.Status === 'Enabled' || r.Status === 'Suspended')
      .catch((e: unknown) => {
        // A policy without s3:GetBucketVersioning: AWS itself honours If-None-Match on versioned buckets, so carry on
        // as on an unversioned one (the `versioned` option says otherwise where needed).
        if (httpStatusOf(e) === 403) return false;
        this.versioned = undefined;
        throw e;
      });
    return this.versioned;
  }

  /** Closes the connections this store keeps open. */
  destroy(): void {
    this.client.destroy();
  }
}

function digest(algorithm: 'md5' | 'sha256', data: Uint8Array): string {
  return createHash(algorithm).update(data).digest('base64');
}

function isPreconditionFailed(e: unknown): boolean {
  return httpStatusOf(e) === 412 || (e as { name?: string }).name === 'PreconditionFailed';
}
