import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { backupWalFiles, decodeIndex, encodeIndex, parseLsn, scanIndex, segmentName, type IndexedPack } from '@coffer/engine';

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
