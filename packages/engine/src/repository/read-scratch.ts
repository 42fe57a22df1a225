/**
 * Buffers that reads of large objects, one after another, reuse: the stored
 * bytes (decrypted over themselves) and a manifest's decompressed bytes.
 * Check and garbage collection read every index object and manifest, check
 * once per pass: a new buffer per object would leave tens of megabytes of
 * them to the garbage collector at any moment. What a read returns is a view
 * of these buffers, valid until the next read with the same scratch.
 */
import { asBuffer } from '../bytes.js';
import type { ObjectStore } from '../store/object-store.js';

export class ReadScratch {
  private raw: Buffer = Buffer.alloc(0);
  private plain: Buffer = Buffer.alloc(0);

  /** The whole object `key`, in the reused buffer where the store can read into one. */
  async read(store: ObjectStore, key: string): Promise<Buffer> {
    if (!store.getInto) return asBuffer(await store.get(key));
    const got = asBuffer(await store.getInto(key, this.raw));
    // Larger than the buffer: the store read it into new bytes, which serve from now on.
    if (got.buffer !== this.raw.buffer && got.byteLength > this.raw.length) this.raw = Buffer.from(got.buffer, got.byteOffset, got.byteLength);
    return got;
  }

  /** A buffer of at least `size` bytes to decompress into. */
  plainFor(size: number): Buffer {
    if (size > this.plain.length) this.plain = Buffer.allocUnsafeSlow(size);
    return this.plain;
  }
}
