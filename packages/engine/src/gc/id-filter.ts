/**
 * A Bloom filter of chunk ids: what garbage collection holds instead of the
 * set of live ids, so that its memory is a setting, not a multiple of the
 * repository (50 million ids would take 1.6 GB as raw ids alone).
 *
 * It can answer "maybe" for an id never added, never "no" for one added: a
 * dead chunk now and then counts as live and stays until a later collection
 * (the rate is `falsePositiveRate`), a live one is never taken for dead.
 * Chunk ids are keyed HMACs, uniformly random, so their own bytes serve as
 * the hash values (double hashing over two 32-bit words of each id).
 */
import { ID_BYTES } from '../format/chunk-codec.js';

export class IdFilter {
  readonly bits: number;
  readonly hashes: number;
  private readonly words: Uint32Array;
  private added = 0;

  /** A filter of `bytes` bytes (rounded to whole words) tuned for about `expected` ids. */
  constructor(bytes: number, expected: number) {
    const words = Math.max(2, Math.ceil(bytes / 4));
    this.words = new Uint32Array(words);
    this.bits = words * 32;
    this.hashes = Math.min(16, Math.max(1, Math.round((this.bits / Math.max(1, expected)) * Math.LN2)));
  }

  /** The smallest filter that holds `expected` ids at about `rate` false positives, capped at `maxBytes`. */
  static sized(expected: number, rate: number, maxBytes: number): IdFilter {
    const bits = Math.ceil((-Math.max(1, expected) * Math.log(rate)) / (Math.LN2 * Math.LN2));
    return new IdFilter(Math.min(maxBytes, Math.max(64, Math.ceil(bits / 8))), expected);
  }

  get count(): number {
    return this.added;
  }

  /** Memory held, in bytes. */
  get bytes(): number {
    return this.words.byteLength;
  }

  /** Adds the id `ids[at, at + 32)`. */
  add(ids: Uint8Array, at = 0): void {
    const [h1, h2] = this.hashPair(ids, at);
    for (let i = 0; i < this.hashes; i++) {
      const bit = (h1 + i * h2) % this.bits;
      this.words[bit >>> 5]! |= 1 << (bit & 31);
    }
    this.added++;
  }

  /** Adds every id in `ids` (ids back to back). */
  addAll(ids: Uint8Array): void {
    for (let at = 0; at + ID_BYTES <= ids.length; at += ID_BYTES) this.add(ids, at);
  }

  /** False only for an id never added. */
  mayHave(ids: Uint8Array, at = 0): boolean {
    const [h1, h2] = this.hashPair(ids, at);
    for (let i = 0; i < this.hashes; i++) {
      const bit = (h1 + i * h2) % this.bits;
      if ((this.words[bit >>> 5]! & (1 << (bit & 31))) === 0) return false;
    }
    return true;
  }

  /** The expected false-positive rate at the current fill. */
  get falsePositiveRate(): number {
    return Math.pow(1 - Math.exp((-this.hashes * this.added) / this.bits), this.hashes);
  }

  private hashPair(ids: Uint8Array, at: number): [number, number] {
    const h1 = (ids[at]! | (ids[at + 1]! << 8) | (ids[at + 2]! << 16) | (ids[at + 3]! << 24)) >>> 0;
    // Odd, so the probe sequence does not fold onto a few bits.
    const h2 = (ids[at + 4]! | (ids[at + 5]! << 8) | (ids[at + 6]! << 16) | (ids[at + 7]! << 24) | 1) >>> 0;
    return [h1, h2];
  }
}
