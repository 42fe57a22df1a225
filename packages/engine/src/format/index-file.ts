/**
 * An index object lists, for a batch of packs, which chunk sits where:
 *
 *   "CIX1" ‖ u32 packs ‖ packs × (sha(32) ‖ u32 n ‖ n × (id(32) ‖ u32 offset ‖ u32 length ‖ u32 rawLength))
 *
 * It is sealed like every metadata object and named by its stored SHA-256.
 */
import { BinaryReader, BinaryWriter } from './binary.js';
import { ID_BYTES } from './chunk-codec.js';
import { isIndexKey } from './keys-layout.js';
import type { PackEntry } from './pack.js';

export interface IndexedPack {
  /** SHA-256 (hex) of the pack's stored bytes: its name. */
  sha: string;
  entries: PackEntry[];
}

const MAGIC = Buffer.from('CIX1');

export function encodeIndex(packs: readonly IndexedPack[]): Buffer {
  const w = new BinaryWriter().bytes(MAGIC).u32(packs.length);
  for (const p of packs) {
    w.bytes(Buffer.from(p.sha, 'hex')).u32(p.entries.length);
    for (const e of p.entries) w.bytes(e.id).u32(e.offset).u32(e.length).u32(e.rawLength);
  }
  return w.finish();
}

export function decodeIndex(plain: Buffer): IndexedPack[] {
  const r = new BinaryReader(plain);
  if (!r.bytes(4).equals(MAGIC)) throw new RangeError('bad index magic');
  const nPacks = r.u32();
  const out: IndexedPack[] = [];
  for (let i = 0; i < nPacks; i++) {
    const sha = r.bytes(32).toString('hex');
    const n = r.u32();
    const entries: PackEntry[] = [];
    for (let j = 0; j < n; j++) {
      const id = r.bytes(ID_BYTES);
      entries.push({ id, offset: r.u32(), length: r.u32(), rawLength: r.u32() });
    }
    out.push({ sha, entries });
  }
  if (r.remaining !== 0) throw new RangeError('trailing bytes after index');
  return out;
}

/**
 * Walks an index without building an object per entry (a restore scans every
 * index object for the few entries it needs): `onPack` for each pack, then
 * `onEntry` with the index bytes and where the entry starts — id at `at`,
 * offset, length and rawLength as u32s after it.
 */
export function scanIndex(plain: Buffer, onPack: (sha: string, n: number) => void, onEntry: (bytes: Buffer, at: number) => void): void {
  forEachPackRecord(plain, (sha, n, start) => {
    onPack(sha, n);
    for (let j = 0, o = start + 36; j < n; j++, o += ID_BYTES + 12) onEntry(plain, o);
  });
}

/**
 * Walks an index's pack records as bytes: `onRecord` gets each pack's name
 * and entry count and where its record (name, count, entries) lies in
 * `plain`, so records can be copied into another index unchanged.
 */
export function forEachPackRecord(plain: Buffer, onRecord: (sha: string, n: number, start: number, end: number) => void): void {
  if (plain.length < 8 || !plain.subarray(0, 4).equals(MAGIC)) throw new RangeError('bad index magic');
  const nPacks = plain.readUInt32BE(4);
  let o = 8;
  for (let i = 0; i < nPacks; i++) {
    if (o + 36 > plain.length) throw new RangeError('truncated record');
    const n = plain.readUInt32BE(o + 32);
    const end = o + 36 + n * (ID_BYTES + 12);
    if (end > plain.length) throw new RangeError('truncated record');
    onRecord(plain.toString('hex', o, o + 32), n, o, end);
    o = end;
  }
  if (o !== plain.length) throw new RangeError('trailing bytes after index');
}

/** An index made of pack records copied from others (`forEachPackRecord`). */
export function joinPackRecords(records: readonly Buffer[]): Buffer {
  const head = Buffer.allocUnsafe(8);
  MAGIC.copy(head, 0);
  head.writeUInt32BE(records.length, 4);
  return Buffer.concat([head, ...records]);
}
/** Stored bytes of an index entry, at least: 44 in plaintext, the ids (32) random and so incompressible. */
const STORED_BYTES_PER_ENTRY = 38;

/** About how many entries index objects of these stored sizes hold (a little over, rather than under). */
export function indexEntriesIn(objects: readonly { key: string; size: number }[]): number {
  return Math.ceil(objects.filter((o) => isIndexKey(o.key)).reduce((n, o) => n + o.size, 0) / STORED_BYTES_PER_ENTRY);
}
