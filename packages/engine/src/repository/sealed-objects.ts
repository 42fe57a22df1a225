/**
 * Object I/O for everything above the repository: the store, reached only
 * through here, and the codec that seals and opens what is stored. Sealed
 * metadata objects are bound to their kind and repository by their associated
 * data; objects named by their SHA-256 are checked against it when read.
 */
import { createHash } from 'node:crypto';
import { CorruptObjectError, MissingObjectError } from '../errors.js';
import { ChunkCodec } from '../format/chunk-codec.js';
import type { Keys } from '../format/sealed-blob.js';
import { FileStore } from '../store/file-store.js';
import { collectList, type ByteRange, type ObjectInfo, type ObjectStore, type PutOutcome, type VersionedObjects } from '../store/object-store.js';
import { getVerified } from './verified.js';

/** Kinds of sealed JSON records named without their SHA-256 (see `sealed-records.ts`). */
export type SealedKind = 'wal' | 'stanza' | 'catalogue' | 'damage' | 'condemned' | 'keep' | 'verification' | 'pack-ledger' | 'audit';
/** What a sealed metadata object is; its associated data names it. */
export type ObjectKind = 'index' | 'manifest' | 'pack-trailer' | 'secrets' | SealedKind;

export class SealedObjects {
  /** This thread's chunk codec (the content layer seals chunks with it, restores open them). */
  readonly codec: ChunkCodec;
  private readonly store: ObjectStore;
  private readonly repositoryId: string;
  private readonly aads = new Map<ObjectKind, Buffer>();

  constructor(store: ObjectStore, repositoryId: string, keys: Keys, compressionLevel: number) {
    this.store = store;
    this.repositoryId = repositoryId;
    this.codec = new ChunkCodec(keys, compressionLevel);
  }

  /** Where the store is, as its properties name it. */
  get location(): string {
    return this.store.properties.location;
  }

  /** Requests worth running at once against this store. */
  get connections(): number {
    return this.store.properties.connections;
  }

  /** Whether each object is kept in several stores (a repository and its mirrors): see `replicate`. */
  get replicated(): boolean {
    return this.store.replicate !== undefined;
  }

  /** Copies each of `keys` to the stores of a replicated store that lack it; 0 on a plain store. */
  replicate(keys: readonly string[]): Promise<number> {
    return this.store.replicate ? this.store.replicate(keys) : Promise.resolve(0);
  }

  /** Versions and Object Lock retention, on stores that keep them. */
  get versions(): VersionedObjects | undefined {
    return this.store.versions;
  }

  /** The directory of a local store, for backups that must not read the repository into itself. */
  get localRoot(): string | undefined {
    return this.store instanceof FileStore ? this.store.root : undefined;
  }

  /** Associated data that binds a sealed metadata object to its kind and repository. */
  aad(kind: ObjectKind): Buffer {
    let aad = this.aads.get(kind);
    if (!aad) {
      aad = createHash('sha256').update(`coffer ${kind}\0${this.repositoryId}`).digest();
      this.aads.set(kind, aad);
    }
    return aad;
  }

  /** Seals a metadata object of `kind` under the current data key. */
  seal(kind: ObjectKind, plaintext: Uint8Array): Buffer {
    return this.codec.sealObject(plaintext, this.aad(kind));
  }

  /** Opens a sealed metadata object of `kind` read from `key`; damage is a `CorruptObjectError` naming it. */
  open(kind: ObjectKind, key: string, bytes: Uint8Array): Buffer {
    const plain = this.codec.openObject(bytes, this.aad(kind));
    if (typeof plain === 'string') throw new CorruptObjectError(key, plain);
    return plain;
  }

  /**
   * `open` for a large object read just for this (index objects, manifests):
   * decrypts over `bytes`, which the caller must not use again.
   */
  openOwned(kind: ObjectKind, key: string, bytes: Uint8Array): Buffer {
    const plain = this.codec.openObjectInPlace(bytes, this.aad(kind));
    if (typeof plain === 'string') throw new CorruptObjectError(key, plain);
    return plain;
  }

  get(key: string, range?: ByteRange): Promise<Uint8Array> {
    return this.store.get(key, range);
  }

  /** The object's bytes, or undefined when the store answers that it is absent (removed since a listing, say). */
  async getIfPresent(key: string): Promise<Uint8Array | undefined> {
    try {
      return await this.store.get(key);
    } catch (e) {
      if (e instanceof MissingObjectError) return undefined;
      throw e;
    }
  }

  /** Gets an object and checks it against the SHA-256 its name carries. */
  getVerified(key: string): Promise<Buffer> {
    return getVerified(this.store, key);
  }

  /** Writes an object once (create-only, durable when the promise resolves). */
  put(key: string, bytes: Uint8Array): Promise<PutOutcome> {
    return this.store.put(key, bytes);
  }

  head(key: string): Promise<ObjectInfo | undefined> {
    return this.store.head(key);
  }

  /** Removes an object (repair, garbage collection); absent is not an error. */
  delete(key: string): Promise<void> {
    return this.store.delete(key);
  }

  /** Every object under `prefix`. */
  list(prefix: string): Promise<ObjectInfo[]> {
    return collectList(this.store, prefix);
  }

  /** Every object under `prefix`, one at a time (listings of millions of packs need not be held whole). */
  each(prefix: string): AsyncIterable<ObjectInfo> {
    return this.store.list(prefix);
  }
}
