/**
 * A pack is many stored chunks ("blobs") back to back, then a sealed trailer
 * listing them, then the trailer's length:
 *
 *   blob₁ ‖ … ‖ blobₙ ‖ sealed(trailer) ‖ u32 trailerLength
 *   trailer = "CPK1" ‖ u32 n ‖ n × (id(32) ‖ u32 length ‖ u32 rawLength)
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
}

const MAGIC = Buffer.from('CPK1');

export function encodeTrailer(entries: readonly PackEntry[]): Buffer {
  const w = new BinaryWriter().bytes(MAGIC).u32(entries.length);
  for (const e of entries) w.bytes(e.id).u32(e.length).u32(e.rawLength);
  return w.finish();
}

export function decodeTrailer(plain: Buffer): PackEntry[] {
  const r = new BinaryReader(plain);
  if (!r.bytes(4).equals(MAGIC)) throw new RangeError('bad pack trailer magic');
  const n = r.u32();
  const out: PackEntry[] = [];
  let offset = 0;
  for (let i = 0; i < n; i++) {
    const id = Buffer.from(r.bytes(ID_BYTES));
    const length = r.u32();
    const rawLength = r.u32();
    out.push({ id, offset, length, rawLength });
    offset += length;
  }
  return out;
}

export function trailerLengthOf(pack: Uint8Array): number {
  return Buffer.from(pack.buffer, pack.byteOffset, pack.byteLength).readUInt32BE(pack.byteLength - 4);
}
