/**
 * A store seen through a key prefix: `put('a/b')` writes `<prefix>a/b` in the
 * store beneath, and listings come back with the prefix taken off. Lets code
 * written against a whole store (leases, for one) keep its records under a
 * prefix of another store, such as one failover epoch's place in a decision
 * bucket.
 */
import type { ByteRange, ObjectInfo, ObjectStore, PutOutcome, StoreProperties } from './object-store.js';

export class PrefixedStore implements ObjectStore {
  readonly properties: StoreProperties;

  /** `prefix` ends with `/`. */
  constructor(
    readonly inner: ObjectStore,
    readonly prefix: string,
  ) {
    if (!prefix.endsWith('/')) throw new TypeError(`store prefix ${JSON.stringify(prefix)} must end with "/"`);
    this.properties = { ...inner.properties, location: `${inner.properties.location}/${prefix.replace(/\/$/, '')}` };
  }

  put(key: string, data: Uint8Array): Promise<PutOutcome> {
    return this.inner.put(this.prefix + key, data);
  }

  get(key: string, range?: ByteRange): Promise<Uint8Array> {
    return this.inner.get(this.prefix + key, range);
  }

  async head(key: string): Promise<ObjectInfo | undefined> {
    const info = await this.inner.head(this.prefix + key);
    return info && { ...info, key };
  }

  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    for await (const info of this.inner.list(this.prefix + prefix)) yield { ...info, key: info.key.slice(this.prefix.length) };
  }

  delete(key: string): Promise<void> {
    return this.inner.delete(this.prefix + key);
  }
}
