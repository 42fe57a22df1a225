/**
 * The storage contract. A store is a flat key space of immutable objects:
 * keys are `/`-separated ASCII paths (`data/ab/ab12…`), values are byte strings.
 * Nothing is ever overwritten; only garbage collection deletes. Every store —
 * local directory, memory, S3 — passes the shared conformance suite in
 * `@coffer/engine/testing`.
 */

export interface ByteRange {
  /** First byte to return, from 0. */
  offset: number;
  /** Number of bytes to return; the range must lie inside the object. */
  length: number;
}

export interface ObjectInfo {
  key: string;
  size: number;
  /** When the object was written, where the store tells (S3's LastModified, a file's mtime). */
  modified?: Date;
}

export type PutOutcome = 'created' | 'existed';

/** What a store can do, as data (callers tune themselves to it). */
export interface StoreProperties {
  /** Requests worth having in flight at once. */
  connections: number;
  /** A human-readable location for messages, with no credentials in it. */
  location: string;
}

/** Object Lock retention on an object: until then no one deletes or overwrites it (COMPLIANCE), or only with a bypass permission (GOVERNANCE). */
export interface ObjectRetention {
  mode: 'GOVERNANCE' | 'COMPLIANCE';
  until: Date;
}

/** The retention a store sets on each object it writes that must outlive its writer (see `isLockable`). */
export interface LockPolicy {
  mode: ObjectRetention['mode'];
  /** From the moment of writing (or of extending), in days. */
  days: number;
}

/** An object whose current version is a delete marker over an earlier version: hidden, not gone. */
export interface HiddenObject {
  key: string;
  /** Size of the newest version under the marker. */
  size: number;
  /** When the marker was set. */
  hiddenAt: Date | undefined;
}

/** Versions a store keeps that are not current (what a versioned bucket holds on to after deletes). */
export interface NoncurrentUsage {
  versions: number;
  bytes: number;
  deleteMarkers: number;
}

/**
 * What versioned stores add (an S3 bucket with versioning, which Object Lock
 * needs): retention per object, and the versions a plain delete leaves
 * behind. The engine uses it where present and works without it.
 */
export interface VersionedObjects {
  /** What this store sets on lockable objects it writes; undefined when it sets no retention. */
  readonly lockPolicy: LockPolicy | undefined;
  /** The retention `key` is under now; undefined when none, when it has passed, or when `key` is absent. */
  retention(key: string): Promise<ObjectRetention | undefined>;
  /** Sets `key`'s retention to end at `until` in `mode`; a store never shortens a retention. */
  extendRetention(key: string, retention: ObjectRetention): Promise<void>;
  /** Objects under `prefix` hidden by a delete marker. */
  hidden(prefix: string): AsyncIterable<HiddenObject>;
  /** Makes the newest version of `key` current again by removing the delete markers over it. */
  unhide(key: string): Promise<void>;
  /** Noncurrent versions and delete markers under `prefix`. */
  noncurrent(prefix: string): Promise<NoncurrentUsage>;
  /**
   * The bytes create-only semantics gave `key`: its oldest version. A racing
   * writer's later version is current for a moment before its writer removes
   * it again (see the S3 store's `put`), so a reader that decides on an
   * object's content (the failover decision log) reads this, never `get`.
   * Rejects with `MissingObjectError` when `key` has no version.
   */
  original(key: string): Promise<Uint8Array>;
}

export interface ObjectStore {
  readonly properties: StoreProperties;

  /** Present on stores that keep versions or Object Lock retention. */
  readonly versions?: VersionedObjects;

  /**
   * Create `key` with `data` only if it does not exist yet.
   * - Absent: the object is written and durable (fsync'd, or acknowledged by the
   *   server) before the promise resolves with `'created'`. A reader never sees
   *   a partial object under `key`.
   * - Present with the same bytes: resolves `'existed'` and changes nothing,
   *   so a retried or concurrent put of the same content is harmless.
   * - Present with other bytes: rejects with `ObjectConflictError`, keeping the
   *   original object.
   * The store must not use `data` after the promise settles: callers reuse it.
   */
  put(key: string, data: Uint8Array): Promise<PutOutcome>;

  /**
   * The object's bytes, or `range` of them. Rejects with `MissingObjectError`
   * when `key` does not exist, and with `InvalidArgumentError` when the range
   * does not lie inside the object. The bytes belong to the caller, who may
   * change them (large objects are decrypted over themselves): a store never
   * hands out a buffer it keeps.
   */
  get(key: string, range?: ByteRange): Promise<Uint8Array>;

  /** Size of `key`, or `undefined` when it does not exist. */
  head(key: string): Promise<ObjectInfo | undefined>;

  /**
   * Every object whose key starts with `prefix`, in no promised order.
   * Objects whose write has not completed are never listed.
   */
  list(prefix: string): AsyncIterable<ObjectInfo>;

  /** Remove `key`. Removing an absent key succeeds (deletes are idempotent). */
  delete(key: string): Promise<void>;

  /**
   * Present on stores that keep each object in several places (a repository
   * and its mirrors, see `ReplicatedStore`): copies each of `keys` to the
   * places that lack it, and resolves how many copies it made.
   */
  replicate?(keys: readonly string[]): Promise<number>;
}

const KEY_PATTERN = /^[A-Za-z0-9._-]+(\/[A-Za-z0-9._-]+)*$/;

/** Reject keys that could escape a directory store or confuse a listing. */
export function assertValidKey(key: string): void {
  if (!KEY_PATTERN.test(key) || key.split('/').some((part) => part === '.' || part === '..')) {
    throw new TypeError(`invalid object key ${JSON.stringify(key)}`);
  }
}

export async function collectList(store: ObjectStore, prefix: string): Promise<ObjectInfo[]> {
  const out: ObjectInfo[] = [];
  for await (const info of store.list(prefix)) out.push(info);
  return out;
}
