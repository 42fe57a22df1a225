import { createHmac, randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ChunkCodec, chunkId, decodeTrailer, encodeTrailer, InvalidArgumentError, LocalKeyProvider, openSealed, seal, WrongKeyError, type Keys, type PackEntry } from '@coffer/engine';
import { scratch } from '../../../test/support/tree.js';

const keys: Keys = { idKey: randomBytes(32), dataKeys: new Map([[1, randomBytes(32)]]), currentKeyId: 1 };

describe('AES-256-GCM boxes', () => {
  it('open(seal(x)) = x, and any flipped bit or other AAD fails', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 2000 }), fc.uint8Array({ minLength: 1, maxLength: 64 }), fc.nat(), (plain, aad, pos) => {
        const key = keys.dataKeys.get(1)!;
        const box = seal(key, plain, aad);
        expect(Buffer.from(openSealed(key, box, aad)!).equals(Buffer.from(plain))).toBe(true);
        const bad = Buffer.from(box);
        const i = pos % bad.length;
        bad[i] = bad[i]! ^ (1 << pos % 8);
        expect(openSealed(key, bad, aad)).toBeUndefined();
        const otherAad = Buffer.concat([Buffer.from(aad), Buffer.from([1])]);
        expect(openSealed(key, box, otherAad)).toBeUndefined();
      }),
    );
  });
});

describe('ChunkCodec', () => {
  const codec = new ChunkCodec(keys, 3);
  const chunkArb = fc.oneof(fc.uint8Array({ maxLength: 5000 }), fc.string({ maxLength: 3000 }).map((s) => Buffer.from(s.repeat(5))));

  it('decode(encode(x)) = x, for compressible and random chunks', () => {
    fc.assert(
      fc.property(chunkArb, (plain) => {
        const id = codec.id(plain);
        const blob = codec.encode(id, plain);
        const back = codec.decode(id, blob);
        expect(typeof back).not.toBe('string');
        expect(Buffer.from(back as Buffer).equals(Buffer.from(plain))).toBe(true);
      }),
    );
  });

  it('chunk ids are HMAC-SHA256 under the id key, for every length and key', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 1, maxLength: 64 }), fc.uint8Array({ maxLength: 200_000 }), (key, plain) => {
        expect(chunkId(key, plain).equals(createHmac('sha256', key).update(plain).digest())).toBe(true);
      }),
      { numRuns: 200 },
    );
  });

  it('ids are keyed: another id key gives other ids for the same bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 1, maxLength: 500 }), (plain) => {
        expect(chunkId(randomBytes(32), plain).equals(codec.id(plain))).toBe(false);
      }),
    );
  });

  it('every single-byte change in a stored chunk is detected', () => {
    fc.assert(
      fc.property(chunkArb, fc.nat(), fc.integer({ min: 1, max: 255 }), (plain, pos, delta) => {
        const id = codec.id(plain);
        const blob = Buffer.from(codec.encode(id, plain));
        const i = pos % blob.length;
        blob[i] = (blob[i]! + delta) & 0xff;
        expect(typeof codec.decode(id, blob)).toBe('string');
      }),
    );
  });

  it('a blob presented under another chunk id is rejected', () => {
    const a = Buffer.from('chunk a'.repeat(50));
    const b = Buffer.from('chunk b'.repeat(50));
    expect(codec.decode(codec.id(b), codec.encode(codec.id(a), a))).toMatch(/tag does not verify/);
  });

  it('group blobs: every member decodes to its own bytes, whatever the mix, and only members do', () => {
    const pieceArb = fc.oneof(fc.uint8Array({ minLength: 1, maxLength: 9000 }), fc.string({ minLength: 1, maxLength: 900 }).map((s) => Buffer.from(s.repeat(9))));
    fc.assert(
      fc.property(fc.array(pieceArb, { minLength: 1, maxLength: 24 }), fc.uint8Array({ minLength: 1, maxLength: 100 }), (pieces, stranger) => {
        const ids = pieces.map((p) => codec.id(p));
        codec.startBatch();
        const blob = Buffer.from(codec.encodeGroup(ids, pieces));
        // A fresh codec has no decoded group cached: each member is found in the blob itself.
        const reader = new ChunkCodec(keys, 3);
        pieces.forEach((p, i) => {
          const back = reader.decode(ids[i]!, blob);
          expect(typeof back).not.toBe('string');
          expect(Buffer.from(back as Buffer).equals(Buffer.from(p))).toBe(true);
        });
        // An id that shares a member's directory prefix but differs after it is caught by the id check itself.
        const forged = Buffer.from(ids[stranger[0]! % ids.length]!);
        forged[8 + (stranger.length % 24)]! ^= 1 + (stranger[0]! % 255);
        expect(new ChunkCodec(keys, 3).decode(forged, blob)).toMatch(/not in the group|another id/);
        const other = Buffer.concat([Buffer.from(stranger), Buffer.from('not a member')]);
        if (!pieces.some((p) => Buffer.from(p).equals(other))) expect(reader.decode(codec.id(other), blob)).toMatch(/not in the group/);
      }),
      { numRuns: 60 },
    );
  });

  it('a flipped byte anywhere in a group blob fails every member', () => {
    const pieces = Array.from({ length: 8 }, (_, i) => Buffer.alloc(8192, `page ${i} `));
    const ids = pieces.map((p) => codec.id(p));
    codec.startBatch();
    const blob = Buffer.from(codec.encodeGroup(ids, pieces));
    expect(blob.length).toBeLessThan(8192);
    for (const pos of [0, 1, 3, 20, Math.floor(blob.length / 2), blob.length - 1]) {
      const bad = Buffer.from(blob);
      bad[pos] = bad[pos]! ^ 0x10;
      const reader = new ChunkCodec(keys, 3);
      for (const id of ids) expect(reader.decode(id, bad)).toMatch(/group|header|tag|key/);
    }
    // A single chunk's blob relabelled as a group (or the reverse) fails its tag.
    const single = Buffer.from(codec.encode(ids[0]!, pieces[0]!));
    single[0] = 2;
    expect(new ChunkCodec(keys, 3).decode(ids[0]!, single)).toMatch(/tag/);
    const relabelled = Buffer.from(blob);
    relabelled[0] = 1;
    expect(new ChunkCodec(keys, 3).decode(ids[0]!, relabelled)).toMatch(/tag/);
  });

  it('compressible chunks are stored smaller; incompressible ones stored raw with bounded overhead', () => {
    const text = Buffer.from('all work and no play makes jack a dull boy\n'.repeat(1000));
    expect(codec.encode(codec.id(text), text).length).toBeLessThan(text.length / 10);
    const noise = randomBytes(50_000);
    const blob = codec.encode(codec.id(noise), noise);
    expect(blob.length).toBeLessThanOrEqual(noise.length + 32);
  });
});

describe('LocalKeyProvider', () => {
  const ctx = { repositoryId: 'repo-1' };

  it('unwraps what it wrapped; another passphrase or repository fails with WrongKeyError', async () => {
    const p = LocalKeyProvider.fromPassphrase('correct horse battery staple');
    const dk = await p.generateDataKey(ctx);
    expect(Buffer.from(await p.unwrap(dk.wrapped, ctx)).equals(Buffer.from(dk.plaintext))).toBe(true);
    await expect(LocalKeyProvider.fromPassphrase('wrong').unwrap(dk.wrapped, ctx)).rejects.toBeInstanceOf(WrongKeyError);
    await expect(p.unwrap(dk.wrapped, { repositoryId: 'repo-2' })).rejects.toBeInstanceOf(WrongKeyError);
    expect(JSON.stringify(dk.wrapped)).not.toContain('correct horse');
  });

  it('key files: round trip, another key file fails, short or missing files are invalid', async () => {
    const { dir, cleanup } = await scratch();
    try {
      await writeFile(join(dir, 'k1'), LocalKeyProvider.newKeyFileContent());
      await writeFile(join(dir, 'k2'), LocalKeyProvider.newKeyFileContent());
      await writeFile(join(dir, 'short'), 'abc');
      const p1 = await LocalKeyProvider.fromKeyFile(join(dir, 'k1'));
      const dk = await p1.generateDataKey(ctx);
      expect(Buffer.from(await p1.unwrap(dk.wrapped, ctx)).equals(Buffer.from(dk.plaintext))).toBe(true);
      const p2 = await LocalKeyProvider.fromKeyFile(join(dir, 'k2'));
      await expect(p2.unwrap(dk.wrapped, ctx)).rejects.toBeInstanceOf(WrongKeyError);
      await expect(LocalKeyProvider.fromKeyFile(join(dir, 'short'))).rejects.toBeInstanceOf(InvalidArgumentError);
      await expect(LocalKeyProvider.fromKeyFile(join(dir, 'absent'))).rejects.toThrow(/key file.*absent/);
      // A passphrase provider does not claim key-file wrappings.
      expect(LocalKeyProvider.fromPassphrase('x').canUnwrap(dk.wrapped)).toBe(false);
    } finally {
      await cleanup();
    }
  });
});

describe('pack trailers', () => {
  const id = fc.uint8Array({ minLength: 32, maxLength: 32 }).map((b) => Buffer.from(b));
  // A blob of page deltas names a base per member (CPK3); a pack without any is CPK2.
  const entryArb = fc.record({ id, length: fc.integer({ min: 1, max: 1 << 20 }), rawLength: fc.nat(1 << 24), members: fc.integer({ min: 1, max: 4 }), base: fc.option(id, { freq: 3 }) });

  it('round trip: members of one blob share its offset and length', () => {
    fc.assert(
      fc.property(fc.array(entryArb, { maxLength: 40 }), (blobs) => {
        const entries: PackEntry[] = [];
        let offset = 0;
        for (const b of blobs) {
          for (let m = 0; m < b.members; m++) entries.push({ id: b.id, offset, length: b.length, rawLength: b.rawLength + m, ...(b.base ? { base: b.base } : {}) });
          offset += b.length;
        }
        const trailer = encodeTrailer(entries);
        expect(trailer.subarray(0, 4).toString()).toBe(entries.some((e) => e.base) ? 'CPK3' : 'CPK2');
        expect(decodeTrailer(trailer)).toEqual(entries);
      }),
    );
  });

  it('reads trailers written before groups (CPK1: offsets follow from lengths), and refuses trailing bytes', () => {
    const ids = [Buffer.alloc(32, 1), Buffer.alloc(32, 2)];
    const v1 = Buffer.concat([Buffer.from('CPK1'), u32(2), ids[0]!, u32(100), u32(400), ids[1]!, u32(50), u32(60)]);
    expect(decodeTrailer(v1)).toEqual([
      { id: ids[0], offset: 0, length: 100, rawLength: 400 },
      { id: ids[1], offset: 100, length: 50, rawLength: 60 },
    ]);
    expect(() => decodeTrailer(Buffer.concat([v1, Buffer.of(0)]))).toThrow(/trailing/);
    expect(() => decodeTrailer(Buffer.concat([Buffer.from('CPK9'), v1.subarray(4)]))).toThrow(/magic/);
  });
});

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
}
