/**
 * A pack is many stored chunks ("blobs") back to back, then a sealed trailer
 * listing them, then the trailer's length:
 *
 *   blob₁ ‖ … ‖ blobₘ ‖ sealed(trailer) ‖ u32 trailerLength
 *   trailer = "CPK2" ‖ u32 n ‖ n × (id(32) ‖ u32 offset ‖ u32 length ‖ u32 rawLength)
 *           | "CPK3" ‖ the same ‖ u32 d ‖ d × (u32 entry number ‖ base id(32))
 *
 * CPK3, written only by a pack that holds page deltas, names each delta's
 * base as the index does (`index-file.ts`), so that an index rebuilt from
 * the packs alone knows them too.
 *
 * The trailer lists chunks, not blobs: the members of a group blob share its
 * offset and length. (Packs written before groups existed carry "CPK1", with
 * no offsets: each chunk there starts where the previous one ended.)
 *
 * The index says where each chunk sits, so restore never reads the trailer;
 * it is there so that an index can be rebuilt from the packs alone.
 */
import { BinaryReader, BinaryWriter } from './binary.js';
import { ID_BYTES } from './chunk-codec.js';

export interface PackEntry {
  id: Buffer;
  offset: number;
  length: number;
  rawLength: number;
  /** For a page delta: the chunk id of the page it was taken against. */
  base?: Buffer;
}

const MAGIC_V1 = Buffer.from('CPK1');
const MAGIC = Buffer.from('CPK2');
const MAGIC_V3 = Buffer.from('CPK3');
/** Bytes per trailer entry (CPK2). */
export const TRAILER_ENTRY = ID_BYTES + 12;

export function encodeTrailer(entries: readonly PackEntry[]): Buffer {
  const deltas = entries.flatMap((e, i) => (e.base === undefined ? [] : [[i, e.base] as const]));
  const w = new BinaryWriter().bytes(deltas.length > 0 ? MAGIC_V3 : MAGIC).u32(entries.length);
  for (const e of entries) w.bytes(e.id).u32(e.offset).u32(e.length).u32(e.rawLength);
  if (deltas.length > 0) {
    w.u32(deltas.length);
    for (const [i, base] of deltas) w.u32(i).bytes(base);
  }
  return w.finish();
}

export function decodeTrailer(plain: Buffer): PackEntry[] {
  const r = new BinaryReader(plain);
  const magic = r.bytes(4);
  const v1 = magic.equals(MAGIC_V1);
  const v3 = magic.equals(MAGIC_V3);
  if (!v1 && !v3 && !magic.equals(MAGIC)) throw new RangeError('bad pack trailer magic');
  const n = r.u32();
  const out: PackEntry[] = [];
  let next = 0;
  for (let i = 0; i < n; i++) {
    const id = Buffer.from(r.bytes(ID_BYTES));
    const offset = v1 ? next : r.u32();
    const length = r.u32();
    const rawLength = r.u32();
    out.push({ id, offset, length, rawLength });
    next = offset + length;
  }
  if (v3) {
    const d = r.u32();
    for (let k = 0, prev = -1; k < d; k++) {
      const at = r.u32();
      if (at >= n || at <= prev) throw new RangeError('a delta record names no entry of the pack, or not in order');
      out[at]!.base = Buffer.from(r.bytes(ID_BYTES));
      prev = at;
    }
  }
  if (r.remaining !== 0) throw new RangeError('trailing bytes after pack trailer');
  return out;
}

export function trailerLengthOf(pack: Uint8Array): number {
  return Buffer.from(pack.buffer, pack.byteOffset, pack.byteLength).readUInt32BE(pack.byteLength - 4);
}
