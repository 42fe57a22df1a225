/**
 * Sealing WAL: in memory (`sealWal`, with or without a stored prefix) and as
 * a file is read (`sealWalFile`, one small buffer used again). Both give the
 * file's SHA-256, one id per fixed piece past the prefix, and sealed blobs
 * that hold each distinct piece once and open to its bytes.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ChunkCodec } from '../dist/format/chunk-codec.js';
import { sealWalFile } from '../dist/postgres/wal-file-read.js';
import { sealWal, WAL_CHUNK, WAL_GROUP, type SealedWal } from '../dist/postgres/wal-seal.js';

const codec = new ChunkCodec({ idKey: randomBytes(32), dataKeys: new Map([[1, randomBytes(32)]]), currentKeyId: 1 }, 3);
let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'coffer-wal-seal-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Bytes made of pieces drawn from a few kinds (random, zeroes, one repeated pattern), cut short anywhere. */
const walBytes = fc
  .record({
    kinds: fc.array(fc.constantFrom('random', 'zero', 'same'), { minLength: 0, maxLength: 14 }),
    cut: fc.nat({ max: WAL_CHUNK - 1 }),
  })
  .map(({ kinds, cut }) => {
    const same = randomBytes(WAL_CHUNK);
    const parts = kinds.map((k) => (k === 'random' ? randomBytes(WAL_CHUNK) : k === 'zero' ? Buffer.alloc(WAL_CHUNK) : same));
    const all = Buffer.concat(parts);
    return all.subarray(0, Math.max(0, all.length - cut));
  });

/** What any sealing of `data` past `prior` must give. */
function expectSealed(s: SealedWal, data: Buffer, prior: number): void {
  expect(s.size).toBe(data.length);
  expect(s.sha256).toBe(createHash('sha256').update(data).digest('hex'));
  const pieces: Buffer[] = [];
  for (let o = prior; o < data.length; o += WAL_CHUNK) pieces.push(data.subarray(o, Math.min(o + WAL_CHUNK, data.length)));
  expect(s.ids.map((id) => id.toString('hex'))).toEqual(pieces.map((p) => codec.id(p).toString('hex')));
  // Each distinct piece sealed once, in a blob of at most a group's bytes, and opens to its bytes.
  const sealedIds = s.sealed.flatMap((b) => b.chunks.map((c) => c.id.toString('hex')));
  expect(new Set(sealedIds).size).toBe(sealedIds.length);
  expect(new Set(sealedIds)).toEqual(new Set(s.ids.map((id) => id.toString('hex'))));
  const byId = new Map(pieces.map((p) => [codec.id(p).toString('hex'), p]));
  for (const blob of s.sealed) {
    expect(blob.chunks.reduce((n, c) => n + c.rawLength, 0)).toBeLessThanOrEqual(WAL_GROUP);
    for (const c of blob.chunks) {
      const opened = codec.decode(c.id, blob.blob);
      expect(typeof opened).not.toBe('string');
      expect((opened as Buffer).equals(byId.get(c.id.toString('hex'))!)).toBe(true);
    }
  }
}

describe('WAL sealing', () => {
  it('in memory, with any stored prefix: the SHA-256 of the whole, an id per piece past the prefix, each distinct piece sealed once', () => {
    fc.assert(
      fc.property(walBytes, fc.nat(), (data, p) => {
        const prior = data.length === 0 ? 0 : p % (data.length + 1);
        expectSealed(sealWal(codec, data, prior), data, prior);
        // The caller's SHA-256 is taken as given (a streamed segment's running digest).
        expect(sealWal(codec, data, prior, 'f'.repeat(64)).sha256).toBe('f'.repeat(64));
      }),
      { numRuns: 40 },
    );
  });

  it('as the file is read, through a buffer smaller than the file: the same as in memory, with the first page and the file identity', async () => {
    let n = 0;
    await fc.assert(
      fc.asyncProperty(walBytes, fc.constantFrom(WAL_CHUNK, WAL_GROUP), async (data, bufferBytes) => {
        const path = join(dir, `f${n++}`);
        await writeFile(path, data);
        const buffer = Buffer.alloc(bufferBytes, 0xee);
        const r = await sealWalFile(codec, path, buffer);
        expectSealed(r.sealed, data, 0);
        expect(r.head.equals(data.subarray(0, 8192))).toBe(true);
        expect(r.identity?.size).toBe(data.length);
        // The same pieces and ids as sealing it in memory.
        expect(r.sealed.ids).toEqual(sealWal(codec, data).ids);
      }),
      { numRuns: 30 },
    );
  });
});
