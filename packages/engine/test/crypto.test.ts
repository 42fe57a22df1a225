import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ChunkCodec, chunkId, InvalidArgumentError, LocalKeyProvider, openSealed, seal, WrongKeyError, type Keys } from '@coffer/engine';
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
