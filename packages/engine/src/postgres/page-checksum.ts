/**
 * PostgreSQL data page checksums (the algorithm of `pg_checksum_page`): 32
 * parallel FNV-1a-style lanes over the 8 KiB page read as little-endian
 * 32-bit words, with `pd_checksum` taken as zero, folded by XOR, mixed with
 * the block number, and mapped to 1…65535.
 */

export const BLCKSZ = 8192;
/** Blocks per 1 GiB relation segment file (RELSEG_SIZE). */
export const RELSEG_BLOCKS = 131072;

const N_SUMS = 32;
const FNV_PRIME = 16777619;
const BASE_OFFSETS = Int32Array.of(
  0x5b1f36e9, 0xb8525960, 0x02ab50aa, 0x1de66d2a, 0x79ff467a, 0x9bb9f8a3, 0x217e7cd2, 0x83e13d2c,
  0xf8d4474f, 0xe39eb970, 0x42c6ae16, 0x993216fa, 0x7b093b5d, 0x98daff3c, 0xf718902a, 0x0b1c9cdb,
  0xe58f764b, 0x187636bc, 0x5d7b3bb1, 0xe73de7de, 0x92bec979, 0xcca6c0b2, 0x304a0979, 0x85aa43d4,
  0x783125bb, 0x6ca8eaa2, 0xe407eac6, 0x4b5cfc3e, 0x9fbf8c76, 0x15ca20be, 0xf2ca9fd3, 0x959bd756,
);

/** One FNV-1a-style step on int32 values (the bits PostgreSQL's uint32 arithmetic gives; int32 stays unboxed in V8). */
function mix(sum: number, value: number): number {
  const t = sum ^ value;
  return Math.imul(t, FNV_PRIME) ^ (t >>> 17);
}

const LITTLE_ENDIAN = new Uint8Array(Uint32Array.of(1).buffer)[0] === 1;

/** The page as 32-bit words (signed: only their bits matter): a view when aligned on a little-endian host, else a decoded copy. */
function pageWords(buf: Buffer, offset: number): Int32Array {
  if (LITTLE_ENDIAN && (buf.byteOffset + offset) % 4 === 0) return new Int32Array(buf.buffer, buf.byteOffset + offset, BLCKSZ / 4);
  const words = new Int32Array(BLCKSZ / 4);
  for (let i = 0; i < words.length; i++) words[i] = buf.readInt32LE(offset + i * 4);
  return words;
}

/** The checksum PostgreSQL stores in `pd_checksum` for `page` (8 KiB at `offset` in `buf`) as block `blkno`. */
export function pageChecksum(buf: Buffer, offset: number, blkno: number): number {
  const words = pageWords(buf, offset);
  // Word 2 holds pd_checksum (low half, bytes 8–9) and pd_flags: the checksum counts as zero.
  const word2 = words[2]! & 0xffff0000;
  let result = 0;
  // The 32 lanes are independent: eight at a time in locals, so that their multiply chains overlap
  // instead of each step waiting on the last (and on a store to an array).
  for (let j = 0; j < N_SUMS; j += 8) {
    let s0 = mix(BASE_OFFSETS[j]!, words[j]!);
    let s1 = mix(BASE_OFFSETS[j + 1]!, words[j + 1]!);
    let s2 = mix(BASE_OFFSETS[j + 2]!, j === 0 ? word2 : words[j + 2]!);
    let s3 = mix(BASE_OFFSETS[j + 3]!, words[j + 3]!);
    let s4 = mix(BASE_OFFSETS[j + 4]!, words[j + 4]!);
    let s5 = mix(BASE_OFFSETS[j + 5]!, words[j + 5]!);
    let s6 = mix(BASE_OFFSETS[j + 6]!, words[j + 6]!);
    let s7 = mix(BASE_OFFSETS[j + 7]!, words[j + 7]!);
    for (let w = N_SUMS + j; w < BLCKSZ / 4; w += N_SUMS) {
      s0 = mix(s0, words[w]!);
      s1 = mix(s1, words[w + 1]!);
      s2 = mix(s2, words[w + 2]!);
      s3 = mix(s3, words[w + 3]!);
      s4 = mix(s4, words[w + 4]!);
      s5 = mix(s5, words[w + 5]!);
      s6 = mix(s6, words[w + 6]!);
      s7 = mix(s7, words[w + 7]!);
    }
    // Two rounds of zeros, as PostgreSQL finishes each lane.
    result ^= mix(mix(s0, 0), 0) ^ mix(mix(s1, 0), 0) ^ mix(mix(s2, 0), 0) ^ mix(mix(s3, 0), 0);
    result ^= mix(mix(s4, 0), 0) ^ mix(mix(s5, 0), 0) ^ mix(mix(s6, 0), 0) ^ mix(mix(s7, 0), 0);
  }
  return (((result ^ blkno) >>> 0) % 65535) + 1;
}

/** Page LSN (`pd_lsn`) as a bigint: xlogid in the high word, xrecoff in the low. */
export function pageLsn(buf: Buffer, offset: number): bigint {
  return (BigInt(buf.readUInt32LE(offset)) << 32n) | BigInt(buf.readUInt32LE(offset + 4));
}

function isAllZero(buf: Buffer, offset: number): boolean {
  for (let i = offset; i < offset + BLCKSZ; i += 8) if (buf.readBigUInt64LE(i) !== 0n) return false;
  return true;
}

/**
 * Blocks in `buf` (whole pages read from a relation file starting at block
 * `firstBlock` of the relation) whose stored checksum is wrong. Like
 * pg_basebackup, new (all-zero) pages and pages changed since the backup
 * started (LSN ≥ `startLsn`, replayed from WAL at recovery) are not judged.
 */
export function badPages(buf: Buffer, firstBlock: number, startLsn: bigint): number[] {
  const bad: number[] = [];
  const pages = Math.floor(buf.length / BLCKSZ);
  // The LSN compared as two 32-bit halves: no bigint per page.
  const startHi = Number(startLsn >> 32n);
  const startLo = Number(startLsn & 0xffffffffn);
  for (let p = 0; p < pages; p++) {
    const o = p * BLCKSZ;
    const hi = buf.readUInt32LE(o);
    if (hi > startHi || (hi === startHi && buf.readUInt32LE(o + 4) >= startLo)) continue;
    const stored = buf.readUInt16LE(o + 8);
    if (stored === pageChecksum(buf, o, firstBlock + p)) continue;
    if (isAllZero(buf, o)) continue;
    bad.push(firstBlock + p);
  }
  return bad;
}
