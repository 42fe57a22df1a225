/**
 * A set of chunk ids numbered in the order added, held as one buffer of raw
 * ids and an open-addressing table keyed by their first bytes. Backups of
 * relation pages deal in hundreds of thousands of ids per backup: as strings
 * in a Map they cost more to make, hash and collect than the lookups
 * themselves.
 */
import { ID_BYTES } from '../format/chunk-codec.js';

export class IdTable {
  /** Id `i` is `ids[32i, 32i + 32)`. */
  readonly ids: Buffer;
  count = 0;
  /** Id index + 1 per slot (0: empty), and the first four bytes of that id, which settle most probes. */
  private readonly slots: Int32Array;
  private readonly slotKeys: Uint32Array;
  private readonly mask: number;

  /**
   * Room for `capacity` distinct ids; adding more is a bug of the caller,
   * refused. Slots are a power of two, at least `capacity / maxLoad` (0.5 by
   * default: few probes; check's large tables take 0.75 to hold more ids in
   * the same memory).
   */
  constructor(
    readonly capacity: number,
    maxLoad = 0.5,
  ) {
    // One more place: a candidate is written there before it is looked up.
    this.ids = Buffer.alloc((capacity + 1) * ID_BYTES);
    let size = 16;
    while (size * maxLoad < capacity) size *= 2;
    this.slots = new Int32Array(size);
    this.slotKeys = new Uint32Array(size);
    this.mask = size - 1;
  }

  /** Index of the id `bytes[at, at + 32)`, or -1. Ids are keyed hashes, so their first bytes spread evenly. */
  find(bytes: Uint8Array, at = 0): number {
    const key = (bytes[at]! | (bytes[at + 1]! << 8) | (bytes[at + 2]! << 16) | (bytes[at + 3]! << 24)) >>> 0;
    for (let s = key & this.mask; ; s = (s + 1) & this.mask) {
      const v = this.slots[s]!;
      if (v === 0) return -1;
      if (this.slotKeys[s] === key && this.sameId(v - 1, bytes, at)) return v - 1;
    }
  }

  has(bytes: Uint8Array, at = 0): boolean {
    return this.find(bytes, at) >= 0;
  }

  /** Adds the id `bytes[at, at + 32)` unless present; returns its index. */
  addBytes(bytes: Uint8Array, at = 0): number {
    this.ids.set(bytes.subarray(at, at + ID_BYTES), this.count * ID_BYTES);
    return this.addWritten();
  }

  id(i: number): Buffer {
    return this.ids.subarray(i * ID_BYTES, (i + 1) * ID_BYTES);
  }

  hex(i: number): string {
    return this.ids.toString('hex', i * ID_BYTES, (i + 1) * ID_BYTES);
  }

  /** Adds the id just written after the last one, unless an equal one is there already. */
  private addWritten(): number {
    const at = this.count * ID_BYTES;
    const found = this.find(this.ids, at);
    if (found >= 0) return found;
    if (this.count >= this.capacity) throw new RangeError(`id table full (${this.capacity} ids)`);
    const key = this.ids.readUInt32LE(at);
    let s = key & this.mask;
    while (this.slots[s] !== 0) s = (s + 1) & this.mask;
    this.slots[s] = this.count + 1;
    this.slotKeys[s] = key;
    return this.count++;
  }

  private sameId(i: number, bytes: Uint8Array, at: number): boolean {
    const ids = this.ids;
    const base = i * ID_BYTES;
    for (let k = 4; k < ID_BYTES; k++) if (ids[base + k] !== bytes[at + k]) return false;
    return true;
  }
}
