import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { backupWalFiles, chunkIdBytes, chunkIdsOf, decodeIndex, decodeManifest, encodeIndex, encodeManifest, pageChecksum, parseLsn, segmentName, type BackupManifest, type IndexedPack } from '@coffer/engine';
// Internals, not part of the package's public surface: tested where they are built.
import { copyPackRecord, forEachPackRecord, joinPackRecords, scanIndex, type PackRecord } from '../dist/format/index-file.js';
import { IdTable } from '../dist/repository/id-table.js';

describe('index objects', () => {
  const id = fc.uint8Array({ minLength: 32, maxLength: 32 }).map((b) => Buffer.from(b));
  // Some entries are page deltas naming their base (CIX2); an index without any is CIX1.
  const packArb = fc.record({
    sha: fc.uint8Array({ minLength: 32, maxLength: 32 }).map((b) => Buffer.from(b).toString('hex')),
    entries: fc.array(
      fc.tuple(fc.record({ id, offset: fc.nat(2 ** 31), length: fc.nat(2 ** 24), rawLength: fc.nat(2 ** 24) }), fc.option(id, { freq: 4 })).map(([e, base]) => (base ? { ...e, base } : e)),
      { maxLength: 20 },
    ),
  });
  const view = (p: IndexedPack) => ({ sha: p.sha, entries: p.entries.map((e) => ({ ...e, id: Buffer.from(e.id), ...(e.base ? { base: Buffer.from(e.base) } : {}) })) });

  it('scanning in place sees exactly what decoding sees, pack by pack and entry by entry', () => {
    fc.assert(
      fc.property(fc.array(packArb, { maxLength: 8 }), (packs: IndexedPack[]) => {
        const plain = encodeIndex(packs);
        expect(plain.subarray(0, 4).toString()).toBe(packs.some((p) => p.entries.some((e) => e.base)) ? 'CIX2' : 'CIX1');
        const seen: IndexedPack[] = [];
        const at = new Map<number, IndexedPack['entries'][number]>();
        scanIndex(
          plain,
          (sha) => seen.push({ sha, entries: [] }),
          (bytes, o) => {
            const e = { id: Buffer.from(bytes.subarray(o, o + 32)), offset: bytes.readUInt32BE(o + 32), length: bytes.readUInt32BE(o + 36), rawLength: bytes.readUInt32BE(o + 40) };
            seen[seen.length - 1]!.entries.push(e);
            at.set(o, e);
          },
          (bytes, entryAt, baseAt) => void (at.get(entryAt)!.base = Buffer.from(bytes.subarray(baseAt, baseAt + 32))),
        );
        expect(seen).toEqual(decodeIndex(plain).map(view));
        expect(decodeIndex(plain).map(view)).toEqual(packs.map(view));
      }),
    );
  });

  it('pack records copied as bytes from several indexes, some dropped, make the index of the packs kept', () => {
    fc.assert(
      fc.property(fc.array(fc.array(packArb, { maxLength: 5 }), { maxLength: 4 }), fc.func(fc.boolean()), (objects: IndexedPack[][], drop: (sha: string) => boolean) => {
        const records: PackRecord[] = [];
        for (const packs of objects) {
          const plain = encodeIndex(packs);
          forEachPackRecord(plain, (sha, _n, start, end) => void (drop(sha) || records.push(copyPackRecord(plain, start, end))));
        }
        const kept = objects.flat().filter((p) => !drop(p.sha));
        expect(joinPackRecords(records).equals(encodeIndex(kept))).toBe(true);
      }),
    );
  });

  it('a truncated or padded index, or a delta record naming no entry, is refused by both readers', () => {
    const entry = { id: Buffer.alloc(32, 1), offset: 0, length: 10, rawLength: 20 };
    for (const plain of [encodeIndex([{ sha: 'ab'.repeat(32), entries: [entry] }]), encodeIndex([{ sha: 'ab'.repeat(32), entries: [{ ...entry, base: Buffer.alloc(32, 2) }] }])]) {
      const bad = [plain.subarray(0, plain.length - 1), Buffer.concat([plain, Buffer.of(0)]), Buffer.concat([Buffer.from('CIX9'), plain.subarray(4)])];
      if (plain.subarray(0, 4).toString() === 'CIX2') {
        // The delta record's entry number (after the one entry and the count) points past the pack's entries.
        const past = Buffer.from(plain);
        past.writeUInt32BE(1, 8 + 36 + 44 + 4);
        bad.push(past);
      }
      for (const b of bad) {
        expect(() => decodeIndex(b)).toThrow(RangeError);
        expect(() => scanIndex(b, () => undefined, () => undefined)).toThrow(RangeError);
      }
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

describe('manifest encoding', () => {
  const idArb = fc.uint8Array({ minLength: 32, maxLength: 32 }).map((b) => Buffer.from(b).toString('hex'));
  const entryArb = fc.oneof(
    fc.record({ path: fc.string({ minLength: 1, maxLength: 12 }), type: fc.constant('file' as const), size: fc.nat(), chunks: fc.array(idArb, { maxLength: 40 }) }),
    fc.record({ path: fc.string({ minLength: 1, maxLength: 12 }), type: fc.constant('dir' as const) }),
    fc.record({ path: fc.string({ minLength: 1, maxLength: 12 }), type: fc.constant('symlink' as const), target: fc.string() }),
  );
  const manifestOf = (entries: object[]): BackupManifest =>
    ({ format: 1, kind: 'files', label: 'l', startedAt: 's', finishedAt: 'f', hostname: 'h', source: '/s', tags: [], stats: {}, entries: entries.map((e) => ({ mode: 0o644, uid: 1, gid: 2, mtimeNs: '5', ...e })) }) as unknown as BackupManifest;
  /** The manifest as plain data: every chunk list made into strings. */
  const plain = (m: BackupManifest) => JSON.parse(JSON.stringify(m)) as unknown;

  it('decodes to what was encoded; ids come as raw bytes, hex only when read; re-encoding gives the same bytes', () => {
    fc.assert(
      fc.property(fc.array(entryArb, { maxLength: 12 }), (entries) => {
        const m = manifestOf(entries);
        const bytes = encodeManifest(m);
        const back = decodeManifest(bytes);
        back.entries.forEach((e, i) => {
          const want = (entries[i] as { chunks?: string[] }).chunks;
          if (want) expect(chunkIdBytes(e)?.toString('hex')).toBe(want.join(''));
          else expect(chunkIdBytes(e)).toBeUndefined();
        });
        expect(encodeManifest(back).equals(bytes)).toBe(true);
        expect(plain(back)).toEqual(plain(m));
        // Once a list is replaced, its bytes no longer stand for it.
        const file = back.entries.find((e) => e.type === 'file');
        if (file) {
          file.chunks = [];
          expect(chunkIdBytes(file)).toBeUndefined();
          expect(chunkIdsOf(file).length).toBe(0);
        }
      }),
    );
  });

  it('still reads manifests written as plain JSON', () => {
    fc.assert(
      fc.property(fc.array(entryArb, { maxLength: 8 }), (entries) => {
        const m = manifestOf(entries);
        const back = decodeManifest(Buffer.from(JSON.stringify(m)));
        expect(plain(back)).toEqual(plain(m));
        back.entries.forEach((e, i) => expect(chunkIdsOf(e).toString('hex')).toBe(((entries[i] as { chunks?: string[] }).chunks ?? []).join('')));
      }),
    );
  });

  it('refuses cut, padded or miscounted bytes, and ids that are not ids', () => {
    const m = manifestOf([{ path: 'a', type: 'file', size: 1, chunks: ['ab'.repeat(32), 'cd'.repeat(32)] }]);
    const bytes = encodeManifest(m);
    expect(() => decodeManifest(bytes.subarray(0, bytes.length - 1))).toThrow(/past the end/);
    expect(() => decodeManifest(Buffer.concat([bytes, Buffer.alloc(1)]))).toThrow(/after the last chunk list/);
    expect(() => decodeManifest(Buffer.from('CMF9' + bytes.subarray(4).toString('latin1'), 'latin1'))).toThrow(/unknown manifest encoding/);
    expect(() => encodeManifest(manifestOf([{ path: 'bad', type: 'file', size: 1, chunks: ['xyz'] }]))).toThrow(/"bad" lists "xyz"/);
  });
});

describe('id tables', () => {
  it('find every id added, at the index it was first given, and no other id', () => {
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ minLength: 32, maxLength: 32 }), { maxLength: 300 }), fc.array(fc.uint8Array({ minLength: 32, maxLength: 32 }), { maxLength: 50 }), (ids, others) => {
        // Ids sharing their first four bytes exercise the full comparison.
        const all = [...ids, ...ids.slice(0, 20).map((id) => Uint8Array.from([...id.subarray(0, 4), ...id.subarray(4).map((b) => b ^ 0xff)]))];
        const table = new IdTable(all.length * 2);
        const first = new Map<string, number>();
        for (const id of [...all, ...all]) {
          const i = table.addBytes(Buffer.concat([Buffer.alloc(3), id]), 3);
          const key = Buffer.from(id).toString('hex');
          if (!first.has(key)) first.set(key, i);
          expect(i).toBe(first.get(key));
        }
        expect(table.count).toBe(first.size);
        for (const [key, i] of first) {
          expect(table.find(Buffer.from(key, 'hex'))).toBe(i);
          expect(table.hex(i)).toBe(key);
        }
        for (const o of others) expect(table.has(o)).toBe(first.has(Buffer.from(o).toString('hex')));
      }),
    );
  });
});
