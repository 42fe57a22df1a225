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
const BASE_OFFSETS = Uint32Array.of(
  0x5b1f36e9, 0xb8525960, 0x02ab50aa, 0x1de66d2a, 0x79ff467a, 0x9bb9f8a3, 0x217e7cd2, 0x83e13d2c,
  0xf8d4474f, 0xe39eb970, 0x42c6ae16, 0x993216fa, 0x7b093b5d, 0x98daff3c, 0xf718902a, 0x0b1c9cdb,
  0xe58f764b, 0x187636bc, 0x5d7b3bb1, 0xe73de7de, 0x92bec979, 0xcca6c0b2, 0x304a0979, 0x85aa43d4,
  0x783125bb, 0x6ca8eaa2, 0xe407eac6, 0x4b5cfc3e, 0x9fbf8c76, 0x15ca20be, 0xf2ca9fd3, 0x959bd756,
);
const sums = new Uint32Array(N_SUMS);

function mix(sum: number, value: number): number {
  const t = (sum ^ value) >>> 0;
  return (Math.imul(t, FNV_PRIME) ^ (t >>> 17)) >>> 0;
}

const LITTLE_ENDIAN = new Uint8Array(Uint32Array.of(1).buffer)[0] === 1;

/** The page as 32-bit words: a view when aligned on a little-endian host, else a decoded copy. */
function pageWords(buf: Buffer, offset: number): Uint32Array {
  if (LITTLE_ENDIAN && (buf.byteOffset + offset) % 4 === 0) return new Uint32Array(buf.buffer, buf.byteOffset + offset, BLCKSZ / 4);
  const words = new Uint32Array(BLCKSZ / 4);
  for (let i = 0; i < words.length; i++) words[i] = buf.readUInt32LE(offset + i * 4);
  return words;
}

/** The checksum PostgreSQL stores in `pd_checksum` for `page` (8 KiB at `offset` in `buf`) as block `blkno`. */
export function pageChecksum(buf: Buffer, offset: number, blkno: number): number {
  sums.set(BASE_OFFSETS);
  const words = pageWords(buf, offset);
  // Word 2 holds pd_checksum (low half, bytes 8–9) and pd_flags: the checksum counts as zero.
  for (let j = 0; j < N_SUMS; j++) sums[j] = mix(sums[j]!, j === 2 ? words[2]! & 0xffff0000 : words[j]!);
  for (let w = N_SUMS; w < words.length; w += N_SUMS) {
    for (let j = 0; j < N_SUMS; j++) sums[j] = mix(sums[j]!, words[w + j]!);
  }
  for (let round = 0; round < 2; round++) for (let j = 0; j < N_SUMS; j++) sums[j] = mix(sums[j]!, 0);
  let result = 0;
  for (let j = 0; j < N_SUMS; j++) result = (result ^ sums[j]!) >>> 0;
  result = (result ^ blkno) >>> 0;
  return (result % 65535) + 1;
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
