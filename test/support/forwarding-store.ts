/** A store that hands every operation to `inner`: tests subclass it and override the one they bend. */
import type { ByteRange, ObjectInfo, ObjectStore, PutOutcome } from '@coffer/engine';

export class ForwardingStore implements ObjectStore {
  constructor(readonly inner: ObjectStore) {}
  get properties() {
    return this.inner.properties;
  }
  put(key: string, data: Uint8Array): Promise<PutOutcome> {
    return this.inner.put(key, data);
  }
  get(key: string, range?: ByteRange): Promise<Uint8Array> {
    return this.inner.get(key, range);
  }
  head(key: string): Promise<ObjectInfo | undefined> {
    return this.inner.head(key);
  }
  list(prefix: string): AsyncIterable<ObjectInfo> {
    return this.inner.list(prefix);
  }
  delete(key: string): Promise<void> {
    return this.inner.delete(key);
  }
}
