import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { backupWalFiles, decodeIndex, encodeIndex, pageChecksum, parseLsn, scanIndex, segmentName, type IndexedPack } from '@coffer/engine';

describe('index objects', () => {
  const packArb = fc.record({
    sha: fc.uint8Array({ minLength: 32, maxLength: 32 }).map((b) => Buffer.from(b).toString('hex')),
    entries: fc.array(
      fc.record({ id: fc.uint8Array({ minLength: 32, maxLength: 32 }).map((b) => Buffer.from(b)), offset: fc.nat(2 ** 31), length: fc.nat(2 ** 24), rawLength: fc.nat(2 ** 24) }),
      { maxLength: 20 },
    ),
  });

  it('scanning in place sees exactly what decoding sees, pack by pack and entry by entry', () => {
    fc.assert(
      fc.property(fc.array(packArb, { maxLength: 8 }), (packs: IndexedPack[]) => {
        const plain = encodeIndex(packs);
        const seen: IndexedPack[] = [];
        scanIndex(
          plain,
          (sha) => seen.push({ sha, entries: [] }),
          (bytes, at) => seen[seen.length - 1]!.entries.push({ id: Buffer.from(bytes.subarray(at, at + 32)), offset: bytes.readUInt32BE(at + 32), length: bytes.readUInt32BE(at + 36), rawLength: bytes.readUInt32BE(at + 40) }),
        );
        expect(seen).toEqual(decodeIndex(plain).map((p) => ({ sha: p.sha, entries: p.entries.map((e) => ({ ...e, id: Buffer.from(e.id) })) })));
      }),
    );
  });

  it('a truncated or padded index is refused by both readers', () => {
    const plain = encodeIndex([{ sha: 'ab'.repeat(32), entries: [{ id: Buffer.alloc(32, 1), offset: 0, length: 10, rawLength: 20 }] }]);
    for (const bad of [plain.subarray(0, plain.length - 1), Buffer.concat([plain, Buffer.of(0)]), Buffer.concat([Buffer.from('CIX9'), plain.subarray(4)])]) {
      expect(() => decodeIndex(bad)).toThrow(RangeError);
      expect(() => scanIndex(bad, () => undefined, () => undefined)).toThrow(RangeError);
    }
  });
});

describe('WAL file names', () => {
  it('segment names split the segment number into log and segment parts for the segment size', () => {
    expect(segmentName(1, 2n, 16 * 1024 * 1024)).toBe('000000010000000000000002');
    expect(segmentName(3, 256n + 5n, 16 * 1024 * 1024)).toBe('000000030000000100000005');
    expect(segmentName(1, 4096n + 1n, 1024 * 1024)).toBe('000000010000000100000001');
  });

  it('a backup needs the segment before its stop LSN and its history file, named by its start', () => {
    const seg = 16 * 1024 * 1024;
    expect(backupWalFiles(1, parseLsn('0/2000028'), parseLsn('0/2000138'), seg)).toEqual(['000000010000000000000002', '000000010000000000000002.00000028.backup']);
    // A stop LSN on a segment boundary belongs to the segment before it, as pg_walfile_name says.
    expect(backupWalFiles(2, parseLsn('1/FF000060'), parseLsn('2/00000000'), seg)).toEqual(['0000000200000001000000FF', '0000000200000001000000FF.00000060.backup']);
  });
});

describe('page checksums', () => {
  /** PostgreSQL's pg_checksum_block and pg_checksum_page, transcribed lane by lane with uint32 arithmetic. */
  const BASE = [
    0x5b1f36e9, 0xb8525960, 0x02ab50aa, 0x1de66d2a, 0x79ff467a, 0x9bb9f8a3, 0x217e7cd2, 0x83e13d2c, 0xf8d4474f, 0xe39eb970, 0x42c6ae16, 0x993216fa, 0x7b093b5d, 0x98daff3c, 0xf718902a,
    0x0b1c9cdb, 0xe58f764b, 0x187636bc, 0x5d7b3bb1, 0xe73de7de, 0x92bec979, 0xcca6c0b2, 0x304a0979, 0x85aa43d4, 0x783125bb, 0x6ca8eaa2, 0xe407eac6, 0x4b5cfc3e, 0x9fbf8c76, 0x15ca20be,
    0xf2ca9fd3, 0x959bd756,
  ];
  const reference = (page: Buffer, blkno: number): number => {
    const copy = Buffer.from(page);
    copy.writeUInt16LE(0, 8);
    const sums = [...BASE];
    const comp = (sum: number, value: number) => {
      const t = (sum ^ value) >>> 0;
      return ((Number((BigInt(t) * 16777619n) & 0xffffffffn) ^ (t >>> 17)) >>> 0);
    };
    for (let i = 0; i < 8192 / 4 / 32; i++) for (let j = 0; j < 32; j++) sums[j] = comp(sums[j]!, copy.readUInt32LE((i * 32 + j) * 4));
    for (let i = 0; i < 2; i++) for (let j = 0; j < 32; j++) sums[j] = comp(sums[j]!, 0);
    const block = sums.reduce((a, b) => (a ^ b) >>> 0, 0);
    return (((block ^ blkno) >>> 0) % 65535) + 1;
  };

  it('equal PostgreSQL’s algorithm for any page and block number, whatever the stored checksum and the buffer alignment', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 8192, maxLength: 8192 }), fc.nat(2 ** 32 - 1), fc.integer({ min: 0, max: 7 }), (bytes, blkno, shift) => {
        const buf = Buffer.alloc(8192 + shift);
        buf.set(bytes, shift);
        expect(pageChecksum(buf, shift, blkno)).toBe(reference(Buffer.from(bytes), blkno));
      }),
      { numRuns: 60 },
    );
  });
});
