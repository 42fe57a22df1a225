/**
 * Object Lock retention and object versions on an S3 bucket: what
 * `S3Store.versions` offers the engine (garbage collection skips and
 * extends retention; check and repair find objects a plain DELETE hid behind
 * a delete marker; `info` counts what noncurrent versions hold).
 */
import {
  DeleteObjectsCommand,
  GetObjectLockConfigurationCommand,
  GetObjectRetentionCommand,
  ListObjectVersionsCommand,
  PutObjectRetentionCommand,
  type ListObjectVersionsCommandOutput,
  type S3Client,
} from '@aws-sdk/client-s3';
import { MissingObjectError, StoreAccessDeniedError, StoreUnavailableError, type HiddenObject, type LockPolicy, type NoncurrentUsage, type ObjectRetention, type VersionedObjects } from '@coffer/engine';
import { httpStatusOf } from './retry.js';

/** What the versions need of their store: its client and bucket, key mapping, and its request discipline. */
export interface S3Access {
  readonly client: S3Client;
  readonly bucket: string;
  /** Key prefix inside the bucket with its trailing slash, or ''. */
  readonly base: string;
  fullKey(key: string): string;
  /** Whether the bucket keeps versions (an unversioned one has no delete markers or noncurrent versions to list). */
  isVersioned(): Promise<boolean>;
  request<T>(op: string, fn: () => Promise<T>): Promise<T>;
  fail(key: string, e: unknown): Error;
  /** The object's bytes: its current version, or `versionId`. */
  get(key: string, versionId?: string): Promise<Uint8Array>;
}

type VersionPage = ListObjectVersionsCommandOutput;

export class S3Versions implements VersionedObjects {
  private lockEnabled: Promise<boolean> | undefined;

  constructor(
    private readonly s3: S3Access,
    readonly lockPolicy: LockPolicy | undefined,
  ) {}

  async retention(key: string): Promise<ObjectRetention | undefined> {
    const Key = this.s3.fullKey(key);
    // A bucket made without Object Lock holds no retention: no request per object there.
    if (!(await this.bucketLocks())) return undefined;
    try {
      const r = await this.s3.request('GetObjectRetention', () => this.s3.client.send(new GetObjectRetentionCommand({ Bucket: this.s3.bucket, Key })));
      const mode = r.Retention?.Mode;
      const until = r.Retention?.RetainUntilDate;
      if ((mode !== 'GOVERNANCE' && mode !== 'COMPLIANCE') || !until || until.getTime() <= Date.now()) return undefined;
      return { mode, until };
    } catch (e) {
      // No retention on the object (404 on AWS and radosgw alike), the object absent, or a bucket without Object Lock (400).
      const status = httpStatusOf(e);
      if (status === 404 || (status === 400 && /ObjectLock|InvalidRequest/i.test(`${(e as { name?: string }).name} ${(e as Error).message}`))) return undefined;
      throw this.s3.fail(key, e);
    }
  }

  /** Whether the bucket has Object Lock enabled (asked once; when the answer is refused, taken as yes). */
  private bucketLocks(): Promise<boolean> {
    this.lockEnabled ??= this.s3
      .request('GetObjectLockConfiguration', () => this.s3.client.send(new GetObjectLockConfigurationCommand({ Bucket: this.s3.bucket })))
      .then((r) => r.ObjectLockConfiguration?.ObjectLockEnabled === 'Enabled')
      .catch((e: unknown) => {
        const status = httpStatusOf(e);
        if (status === 404 || status === 400) return false;
        if (status === 403) return true;
        this.lockEnabled = undefined;
        throw this.s3.fail(this.s3.bucket, e);
      });
    return this.lockEnabled;
  }

  async extendRetention(key: string, retention: ObjectRetention): Promise<void> {
    const Key = this.s3.fullKey(key);
    try {
      await this.s3.request('PutObjectRetention', () =>
        this.s3.client.send(new PutObjectRetentionCommand({ Bucket: this.s3.bucket, Key, Retention: { Mode: retention.mode, RetainUntilDate: retention.until } })),
      );
    } catch (e) {
      throw this.s3.fail(key, e);
    }
  }

  async *hidden(prefix: string): AsyncIterable<HiddenObject> {
    if (!(await this.s3.isVersioned())) return;
    // A key's versions come newest first, but its delete markers and versions are listed apart and may span pages.
    const markers = new Map<string, Date | undefined>();
    const newestOlder = new Map<string, number>();
    for await (const page of this.pages(prefix)) {
      for (const m of page.DeleteMarkers ?? []) if (m.IsLatest && m.Key) markers.set(m.Key, m.LastModified);
      for (const v of page.Versions ?? []) if (!v.IsLatest && v.Key && !newestOlder.has(v.Key)) newestOlder.set(v.Key, v.Size ?? 0);
    }
    for (const [Key, hiddenAt] of markers) {
      const size = newestOlder.get(Key);
      if (size !== undefined && Key.startsWith(this.s3.base)) yield { key: Key.slice(this.s3.base.length), size, hiddenAt };
    }
  }

  async unhide(key: string): Promise<void> {
    const Key = this.s3.fullKey(key);
    const markers: string[] = [];
    for await (const page of this.pages(key)) for (const m of page.DeleteMarkers ?? []) if (m.Key === Key && m.VersionId) markers.push(m.VersionId);
    if (markers.length === 0) return;
    let result;
    try {
      result = await this.s3.request('DeleteObjects', () =>
        this.s3.client.send(new DeleteObjectsCommand({ Bucket: this.s3.bucket, Delete: { Objects: markers.map((VersionId) => ({ Key, VersionId })), Quiet: true } })),
      );
    } catch (e) {
      throw this.s3.fail(key, e);
    }
    const err = result.Errors?.[0];
    if (err) {
      const detail = `removing its delete marker: ${err.Code}: ${err.Message ?? ''}`;
      throw err.Code === 'AccessDenied' ? new StoreAccessDeniedError(key, detail) : new StoreUnavailableError(key, detail);
    }
  }

  async original(key: string): Promise<Uint8Array> {
    if (!(await this.s3.isVersioned())) return this.s3.get(key);
    const ids = await this.versionIds(key, false);
    const oldest = ids[ids.length - 1];
    if (!oldest) throw new MissingObjectError(key);
    return this.s3.get(key, oldest);
  }

  /** Version ids of `key`, newest first; with `markers`, delete markers too. */
  async versionIds(key: string, markers: boolean): Promise<string[]> {
    const Key = this.s3.fullKey(key);
    const ids: string[] = [];
    for await (const page of this.pages(key)) {
      for (const v of [...(page.Versions ?? []), ...(markers ? (page.DeleteMarkers ?? []) : [])]) if (v.Key === Key && v.VersionId) ids.push(v.VersionId);
    }
    return ids;
  }

  async noncurrent(prefix: string): Promise<NoncurrentUsage> {
    const usage: NoncurrentUsage = { versions: 0, bytes: 0, deleteMarkers: 0 };
    if (!(await this.s3.isVersioned())) return usage;
    for await (const page of this.pages(prefix)) {
      for (const v of page.Versions ?? []) {
        if (v.IsLatest) continue;
        usage.versions++;
        usage.bytes += v.Size ?? 0;
      }
      usage.deleteMarkers += (page.DeleteMarkers ?? []).length;
    }
    return usage;
  }

  private async *pages(prefix: string): AsyncIterable<VersionPage> {
    const Prefix = prefix === '' ? this.s3.base : this.s3.fullKey(prefix.replace(/\/$/, '')) + (prefix.endsWith('/') ? '/' : '');
    let keyMarker: string | undefined;
    let versionMarker: string | undefined;
    for (;;) {
      let page: VersionPage;
      try {
        page = await this.s3.request('ListObjectVersions', () =>
          this.s3.client.send(
            new ListObjectVersionsCommand({ Bucket: this.s3.bucket, Prefix, ...(keyMarker ? { KeyMarker: keyMarker } : {}), ...(versionMarker ? { VersionIdMarker: versionMarker } : {}) }),
          ),
        );
      } catch (e) {
        throw this.s3.fail(prefix || '/', e);
      }
      yield page;
      if (!page.IsTruncated) return;
      keyMarker = page.NextKeyMarker;
      versionMarker = page.NextVersionIdMarker;
    }
  }
}
