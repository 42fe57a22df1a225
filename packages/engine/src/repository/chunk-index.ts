/**
 * The in-memory index: chunk id → pack, offset, length. Ids are keyed by
 * their 32 raw bytes as a one-byte string (compact in V8) and locations
 * live in parallel number arrays, not one object per chunk.
 */
import type { PackEntry } from '../format/pack.js';
import { MAX_CHAIN } from '../format/delta-group.js';

export interface ChunkLocation {
  /** Pack SHA-256, hex. */
  pack: string;
  offset: number;
  length: number;
  rawLength: number;
  /** For a page delta: the chunk its page was taken against. */
  base?: Buffer;
}

export function idKeyOf(id: Uint8Array): string {
  return Buffer.from(id.buffer, id.byteOffset, id.byteLength).toString('latin1');
}

export class ChunkIndex {
  private readonly slots = new Map<string, number>();
  private readonly packs: string[] = [];
  private readonly packNumber = new Map<string, number>();
  private readonly locPack: number[] = [];
  private readonly locOffset: number[] = [];
  private readonly locLength: number[] = [];
  private readonly locRaw: number[] = [];
  /** Base ids of the chunks stored as page deltas, by slot. */
  private readonly bases = new Map<number, Buffer>();

  get size(): number {
    return this.slots.size;
  }

  has(id: Uint8Array): boolean {
    return this.slots.has(idKeyOf(id));
  }

  hasHex(idHex: string): boolean {
    return this.slots.has(Buffer.from(idHex, 'hex').toString('latin1'));
  }

  get(id: Uint8Array): ChunkLocation | undefined {
    const slot = this.slots.get(idKeyOf(id));
    if (slot === undefined) return undefined;
    const base = this.bases.get(slot);
    return { pack: this.packs[this.locPack[slot]!]!, offset: this.locOffset[slot]!, length: this.locLength[slot]!, rawLength: this.locRaw[slot]!, ...(base ? { base } : {}) };
  }

  /** Whether the chunk can be read back: it is indexed, and so is every base its delta chain needs. */
  complete(id: Uint8Array): boolean {
    let slot = this.slots.get(idKeyOf(id));
    for (let step = 0; slot !== undefined; step++) {
      const base = this.bases.get(slot);
      if (!base) return true;
      if (step === MAX_CHAIN) return false;
      slot = this.slots.get(idKeyOf(base));
    }
    return false;
  }

  /** Records a chunk's location; the first location seen for an id wins. */
  add(packSha: string, entry: PackEntry): void {
    const key = idKeyOf(entry.id);
    if (this.slots.has(key)) return;
    let p = this.packNumber.get(packSha);
    if (p === undefined) {
      p = this.packs.length;
      this.packs.push(packSha);
      this.packNumber.set(packSha, p);
    }
    const slot = this.locPack.length;
    this.locPack.push(p);
    this.locOffset.push(entry.offset);
    this.locLength.push(entry.length);
    this.locRaw.push(entry.rawLength);
    if (entry.base) this.bases.set(slot, Buffer.from(entry.base));
    this.slots.set(key, slot);
  }

  /** Forgets every chunk located in a pack `lost` names (a missing pack must not serve dedup); returns how many. */
  dropPacks(lost: (packSha: string) => boolean): number {
    let dropped = 0;
    for (const [key, slot] of this.slots) {
      if (!lost(this.packs[this.locPack[slot]!]!)) continue;
      this.slots.delete(key);
      dropped++;
    }
    return dropped;
  }

  packShas(): readonly string[] {
    return this.packs;
  }
}
