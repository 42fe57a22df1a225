/**
 * An index object lists, for a batch of packs, which chunk sits where:
 *
 *   "CIX1" ‖ u32 packs ‖ packs × (sha(32) ‖ u32 n ‖ n × entry)
 *   "CIX2" ‖ u32 packs ‖ packs × (sha(32) ‖ u32 n ‖ n × entry ‖ u32 d ‖ d × (u32 entry number ‖ base id(32)))
 *   entry = id(32) ‖ u32 offset ‖ u32 length ‖ u32 rawLength
 *
 * CIX2 adds, per pack, the entries that are page deltas and the chunk each
 * was taken against (its base): a restore fetches the base first, garbage
 * collection keeps it while the delta lives. An index is written as CIX2 only
 * when one of its packs holds a delta, so repositories without deltas stay
 * readable by Coffer versions that know only CIX1. The entries keep one
 * stride in both, so a scan over them does not care which it reads.
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

const MAGIC_V1 = Buffer.from('CIX1');
const MAGIC_V2 = Buffer.from('CIX2');
/** Bytes of an entry, in both versions. */
export const INDEX_ENTRY = ID_BYTES + 12;
/** Bytes of a base record in a CIX2 pack record's delta section. */
const BASE_RECORD = 4 + ID_BYTES;

export function encodeIndex(packs: readonly IndexedPack[]): Buffer {
  const v2 = packs.some((p) => p.entries.some((e) => e.base !== undefined));
  const w = new BinaryWriter().bytes(v2 ? MAGIC_V2 : MAGIC_V1).u32(packs.length);
  for (const p of packs) {
    w.bytes(Buffer.from(p.sha, 'hex')).u32(p.entries.length);
    for (const e of p.entries) w.bytes(e.id).u32(e.offset).u32(e.length).u32(e.rawLength);
    if (!v2) continue;
    const deltas = p.entries.flatMap((e, i) => (e.base === undefined ? [] : [[i, e.base] as const]));
    w.u32(deltas.length);
    for (const [i, base] of deltas) {
      if (base.byteLength !== ID_BYTES) throw new RangeError(`a base id has ${ID_BYTES} bytes, not ${base.byteLength}`);
      w.u32(i).bytes(base);
    }
  }
  return w.finish();
}

function versionOf(plain: Buffer): 1 | 2 {
  const magic = plain.subarray(0, 4);
  if (magic.equals(MAGIC_V1)) return 1;
  if (magic.equals(MAGIC_V2)) return 2;
  throw new RangeError('bad index magic');
}

export function decodeIndex(plain: Buffer): IndexedPack[] {
  const v2 = versionOf(plain) === 2;
  const r = new BinaryReader(plain);
  r.bytes(4);
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
    if (v2) {
      const d = r.u32();
      for (let k = 0, prev = -1; k < d; k++) {
        const at = r.u32();
        if (at >= n || at <= prev) throw new RangeError('a delta record names no entry of its pack, or not in order');
        entries[at]!.base = r.bytes(ID_BYTES);
        prev = at;
      }
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
 * offset, length and rawLength as u32s after it — then, for a pack's page
 * deltas, `onBase` with the delta's entry (as `onEntry` had it) and where
 * its base id starts.
 */
export function scanIndex(
  plain: Buffer,
  onPack: (sha: string, n: number) => void,
  onEntry: (bytes: Buffer, at: number) => void,
  onBase?: (bytes: Buffer, entryAt: number, baseAt: number) => void,
): void {
  forEachPackRecord(plain, (sha, n, start, end) => {
    onPack(sha, n);
    const first = start + 36;
    for (let j = 0, o = first; j < n; j++, o += INDEX_ENTRY) onEntry(plain, o);
    if (!onBase) return;
    for (let o = first + n * INDEX_ENTRY + 4; o < end; o += BASE_RECORD) onBase(plain, first + plain.readUInt32BE(o) * INDEX_ENTRY, o + 4);
  });
}

/**
 * Walks an index's pack records as bytes: `onRecord` gets each pack's name
 * and entry count and where its record (name, count, entries, and in CIX2
 * its delta section) lies in `plain`, so records can be copied into another
 * index (`joinPackRecords`) unchanged.
 */
export function forEachPackRecord(plain: Buffer, onRecord: (sha: string, n: number, start: number, end: number) => void): void {
  if (plain.length < 8) throw new RangeError('bad index magic');
  const v2 = versionOf(plain) === 2;
  const nPacks = plain.readUInt32BE(4);
  let o = 8;
  for (let i = 0; i < nPacks; i++) {
    if (o + 36 > plain.length) throw new RangeError('truncated record');
    const n = plain.readUInt32BE(o + 32);
    let end = o + 36 + n * INDEX_ENTRY;
    if (v2) {
      if (end + 4 > plain.length) throw new RangeError('truncated record');
      const d = plain.readUInt32BE(end);
      const first = end + 4;
      end = first + d * BASE_RECORD;
      if (end > plain.length) throw new RangeError('truncated record');
      for (let k = 0; k < d; k++) {
        const at = plain.readUInt32BE(first + k * BASE_RECORD);
        if (at >= n || (k > 0 && at <= plain.readUInt32BE(first + (k - 1) * BASE_RECORD))) throw new RangeError('a delta record names no entry of its pack, or not in order');
      }
    }
    if (end > plain.length) throw new RangeError('truncated record');
    onRecord(plain.toString('hex', o, o + 32), n, o, end);
    o = end;
  }
  if (o !== plain.length) throw new RangeError('trailing bytes after index');
}

/** A pack record as `forEachPackRecord` found it: its bytes, and whether they end in a delta section (CIX2). */
export interface PackRecord {
  bytes: Buffer;
  sectioned: boolean;
}

/** The pack record `forEachPackRecord` reported at `start`–`end` of `plain`, copied. */
export function copyPackRecord(plain: Buffer, start: number, end: number): PackRecord {
  return { bytes: Buffer.from(plain.subarray(start, end)), sectioned: versionOf(plain) === 2 };
}

/**
 * An index made of pack records copied from others: CIX2 when one of them
 * has a delta, else CIX1 (as `encodeIndex` chooses), each record's delta
 * section added or dropped to match.
 */
export function joinPackRecords(records: readonly PackRecord[]): Buffer {
  const v2 = records.some((r) => r.sectioned && r.bytes.readUInt32BE(36 + r.bytes.readUInt32BE(32) * INDEX_ENTRY) > 0);
  const head = Buffer.allocUnsafe(8);
  (v2 ? MAGIC_V2 : MAGIC_V1).copy(head, 0);
  head.writeUInt32BE(records.length, 4);
  const parts: Buffer[] = [head];
  for (const r of records) {
    if (r.sectioned === v2) parts.push(r.bytes);
    else if (v2) parts.push(r.bytes, Buffer.alloc(4));
    else parts.push(r.bytes.subarray(0, r.bytes.length - 4));
  }
  return Buffer.concat(parts);
}

/** Stored bytes of an index entry, at least: 44 in plaintext, the ids (32) random and so incompressible. */
const STORED_BYTES_PER_ENTRY = 38;

/** About how many entries index objects of these stored sizes hold (a little over, rather than under). */
export function indexEntriesIn(objects: readonly { key: string; size: number }[]): number {
  return Math.ceil(objects.filter((o) => isIndexKey(o.key)).reduce((n, o) => n + o.size, 0) / STORED_BYTES_PER_ENTRY);
}
