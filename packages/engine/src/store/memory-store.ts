import { bytesEqual } from '../bytes.js';
import { MissingObjectError, ObjectConflictError } from '../errors.js';
import { assertValidKey, type ByteRange, type ObjectInfo, type ObjectStore, type PutOutcome, type StoreProperties } from './object-store.js';
import { checkRange } from './range.js';

/** An in-memory store for unit tests and scratch work; holds copies, never caller buffers. */
export class MemoryStore implements ObjectStore {
  readonly properties: StoreProperties = { connections: 16, location: 'memory:' };
  private readonly objects = new Map<string, Uint8Array>();
  private readonly written = new Map<string, Date>();

  async put(key: string, data: Uint8Array): Promise<PutOutcome> {
    assertValidKey(key);
    const existing = this.objects.get(key);
    if (existing) {
      if (bytesEqual(existing, data)) return 'existed';
      throw new ObjectConflictError(key);
    }
    this.objects.set(key, Uint8Array.from(data));
    this.written.set(key, new Date());
    return 'created';
  }

  async get(key: string, range?: ByteRange): Promise<Uint8Array> {
    assertValidKey(key);
    const data = this.objects.get(key);
    if (!data) throw new MissingObjectError(key);
    if (!range) return Uint8Array.from(data);
    checkRange(key, data.byteLength, range);
    return data.slice(range.offset, range.offset + range.length);
  }

  async head(key: string): Promise<ObjectInfo | undefined> {
    assertValidKey(key);
    const data = this.objects.get(key);
    return data ? { key, size: data.byteLength, modified: this.written.get(key)! } : undefined;
  }

  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    for (const [key, data] of [...this.objects]) {
      if (key.startsWith(prefix)) yield { key, size: data.byteLength, modified: this.written.get(key)! };
    }
  }

  async delete(key: string): Promise<void> {
    assertValidKey(key);
    this.objects.delete(key);
    this.written.delete(key);
  }
}
