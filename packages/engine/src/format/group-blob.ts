/**
 * The layout of a group blob's plaintext — several small chunks compressed
 * together — and nothing else (no keys, no compression):
 *
 *   format(3 = zstd, 4 = raw) ‖ u16 n ‖ n × (id prefix(8) ‖ u32 rawLength) ‖ body
 *
 * A reader finds a member by its id prefix and then checks the member's full
 * keyed id, as for a single chunk.
 */

export const ENC_GROUP_ZSTD = 3;
export const ENC_GROUP_RAW = 4;
/** Bytes of a member's id kept in the directory. */
export const GROUP_ID_PREFIX = 8;
const ENTRY = GROUP_ID_PREFIX + 4;

/** The directory that precedes a group's body. */
export function encodeGroupHead(ids: readonly Uint8Array[], lengths: readonly number[], compressed: boolean): Buffer {
  if (ids.length !== lengths.length || ids.length === 0 || ids.length > 0xffff) throw new RangeError(`a group holds 1–65535 chunks, got ${ids.length}`);
  const head = Buffer.allocUnsafe(3 + ids.length * ENTRY);
  head[0] = compressed ? ENC_GROUP_ZSTD : ENC_GROUP_RAW;
  head.writeUInt16BE(ids.length, 1);
  ids.forEach((id, i) => {
    const o = 3 + i * ENTRY;
    head.set(id.subarray(0, GROUP_ID_PREFIX), o);
    head.writeUInt32BE(lengths[i]!, o + GROUP_ID_PREFIX);
  });
  return head;
}

export interface GroupDirectory {
  compressed: boolean;
  /** Each member's 8-byte id prefix as two big-endian words. */
  prefixWords: Uint32Array;
  offsets: number[];
  lengths: number[];
  /** Sum of the members' lengths: the body's plaintext size. */
  total: number;
  /** Where the body starts in the plaintext. */
  bodyStart: number;
}

/** Reads a group's directory, or says what is wrong with it. */
/**
 * How many members a group's directory lists, or what is wrong with its
 * start: a format byte `formats` does not hold, no members, or less room than
 * `entry` bytes a member (plain groups here, delta groups in `delta-group.ts`).
 */
export function groupMembers(plain: Buffer, formats: readonly number[], entry: number): number | string {
  if (plain.length < 3 || !formats.includes(plain[0]!)) return `has unknown encoding ${plain[0]}`;
  const n = plain.readUInt16BE(1);
  if (n === 0 || plain.length < 3 + n * entry) return 'has a truncated directory';
  return n;
}

export function decodeGroupHead(plain: Buffer): GroupDirectory | string {
  const n = groupMembers(plain, [ENC_GROUP_ZSTD, ENC_GROUP_RAW], ENTRY);
  if (typeof n === 'string') return n;
  const bodyStart = 3 + n * ENTRY;
  const prefixWords = new Uint32Array(n * 2);
  const offsets: number[] = [];
  const lengths: number[] = [];
  let total = 0;
  for (let i = 0; i < n; i++) {
    const o = 3 + i * ENTRY;
    prefixWords[2 * i] = plain.readUInt32BE(o);
    prefixWords[2 * i + 1] = plain.readUInt32BE(o + 4);
    offsets.push(total);
    const len = plain.readUInt32BE(o + GROUP_ID_PREFIX);
    lengths.push(len);
    total += len;
  }
  return { compressed: plain[0] === ENC_GROUP_ZSTD, prefixWords, offsets, lengths, total, bodyStart };
}

/** The index of the member whose id prefix matches `id`'s, searching from `from` (members are usually asked for in order); -1 if none. */
export function findMember(dir: Pick<GroupDirectory, 'prefixWords' | 'lengths'>, id: Uint8Array, from: number, skip: (i: number) => boolean = () => false): number {
  const n = dir.lengths.length;
  const hi = ((id[0]! << 24) | (id[1]! << 16) | (id[2]! << 8) | id[3]!) >>> 0;
  const lo = ((id[4]! << 24) | (id[5]! << 16) | (id[6]! << 8) | id[7]!) >>> 0;
  for (let k = 0; k < n; k++) {
    const i = (from + k) % n;
    if (dir.prefixWords[2 * i] !== hi || dir.prefixWords[2 * i + 1] !== lo) continue;
    if (skip(i)) continue;
    return i;
  }
  return -1;
}
