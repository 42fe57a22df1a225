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
}

export type PutOutcome = 'created' | 'existed';

/** What a store can do, as data (callers tune themselves to it). */
export interface StoreProperties {
  /** Requests worth having in flight at once. */
  connections: number;
  /** A human-readable location for messages, with no credentials in it. */
  location: string;
}

export interface ObjectStore {
  readonly properties: StoreProperties;

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
   * does not lie inside the object.
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
