/**
 * The page-delta codec: any page comes back exact from its delta against
 * any base; a page changed the way PostgreSQL changes one (a header, a few
 * tuples) costs a small fraction of itself; a delta read against another
 * base, damaged or cut short fails with a typed error or gives a page-sized
 * result — never a crash — for the chunk id check to judge.
 */
import { randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { PageDelta, PageDeltaError } from '../src/format/page-delta.js';
import { ChunkCodec } from '../src/format/chunk-codec.js';

const PAGE = 8192;
const codec = new PageDelta(3);

/** A page-like block: a 24-byte header, line pointers, free space of zeros, tuples of text-like bytes at the end. */
const page = fc.tuple(fc.uint8Array({ minLength: 24, maxLength: 24 }), fc.integer({ min: 10, max: 120 }), fc.integer({ min: 0, max: 2 ** 31 })).map(([header, tuples, seed]) => {
  const p = Buffer.alloc(PAGE);
  Buffer.from(header).copy(p, 0);
  let x = seed | 1;
  const next = () => ((x = (Math.imul(x, 1103515245) + 12345) >>> 0), x);
  let end = PAGE;
  for (let t = 0; t < tuples && end > 24 + 4 * tuples + 64; t++) {
    const len = 32 + (next() % 32);
    end -= len;
    for (let i = 0; i < len; i++) p[end + i] = 97 + (next() % 26);
    p.writeUInt32LE((end << 15) | len, 24 + 4 * t);
  }
  return p;
});

/** What an update does to a page: its header rewritten and a few byte ranges changed. */
const edits = fc.array(fc.tuple(fc.integer({ min: 24, max: PAGE - 64 }), fc.uint8Array({ minLength: 1, maxLength: 48 })), { maxLength: 6 });

function edited(base: Buffer, header: Uint8Array, changes: [number, Uint8Array][]): Buffer {
  const p = Buffer.from(base);
  Buffer.from(header).copy(p, 0);
  for (const [at, bytes] of changes) Buffer.from(bytes).copy(p, at);
  return p;
}

function roundTrip(p: Uint8Array, base: Uint8Array): Buffer | undefined {
  const delta = codec.encode(p, base);
  if (!delta) return undefined;
  return codec.decode(Buffer.from(delta), base, p.byteLength);
}

describe('page deltas', () => {
  it('identical, edited, disjoint and random pages come back exact from their delta (or are declined)', () => {
    fc.assert(
      fc.property(page, page, fc.uint8Array({ minLength: 24, maxLength: 24 }), edits, fc.uint8Array({ minLength: PAGE, maxLength: PAGE }), (base, other, header, changes, noise) => {
        for (const p of [base, edited(base, header, changes), other, Buffer.from(noise)]) {
          const back = roundTrip(p, base);
          if (back) expect(back.equals(p)).toBe(true);
        }
      }),
      { numRuns: 200 },
    );
  });

  it('a page changed in its header and a few tuples costs little more than the bytes changed; random bytes are declined', () => {
    fc.assert(
      fc.property(page, fc.uint8Array({ minLength: 24, maxLength: 24 }), edits, (base, header, changes) => {
        const p = edited(base, header, changes);
        const delta = codec.encode(p, base);
        expect(delta).toBeDefined();
        expect(delta!.byteLength).toBeLessThan(24 + changes.reduce((n, [, b]) => n + b.byteLength, 0) + 200);
        // An unchanged page is a few bytes: the whole of it is a match in the base.
        expect(codec.encode(Buffer.from(base), base)!.byteLength).toBeLessThan(40);
        // Bytes no base predicts and zstd cannot shrink: stored whole.
        expect(codec.encode(randomBytes(PAGE), base)).toBeUndefined();
      }),
      { numRuns: 200 },
    );
  });

  it('read against another base, or damaged, a delta fails typed or gives a page-sized result (which the chunk id then checks)', () => {
    const outcome = (delta: Buffer, base: Buffer) => {
      try {
        return codec.decode(delta, base, PAGE).byteLength;
      } catch (e) {
        expect(e).toBeInstanceOf(PageDeltaError);
        return 'refused';
      }
    };
    fc.assert(
      fc.property(page, page, fc.uint8Array({ minLength: 24, maxLength: 24 }), edits, fc.nat(), fc.integer({ min: 1, max: 255 }), (base, other, header, changes, at, flip) => {
        const delta = Buffer.from(codec.encode(edited(base, header, changes), base)!);
        expect([PAGE, 'refused']).toContain(outcome(delta, other));
        const damaged = Buffer.from(delta);
        damaged[at % damaged.length]! ^= flip;
        expect([PAGE, 'refused']).toContain(outcome(damaged, base));
        expect(outcome(damaged.subarray(0, damaged.length - 1 - (at % 4)), base)).toBe('refused');
      }),
      { numRuns: 300 },
    );
  });

  it('a base that begins like a zstd dictionary is declined or round-trips; a wrong size is refused', () => {
    const base = Buffer.alloc(PAGE, 7);
    base.writeUInt32LE(0xec30a437, 0);
    const p = Buffer.from(base);
    p[100] = 1;
    const back = roundTrip(p, base);
    if (back) expect(back.equals(p)).toBe(true);
    const plain = Buffer.alloc(PAGE, 3);
    const delta = Buffer.from(codec.encode(Buffer.alloc(PAGE, 4), plain)!);
    expect(() => codec.decode(delta, plain, PAGE - 1)).toThrow(PageDeltaError);
    expect(() => codec.decode(Buffer.from('not a frame'), plain, PAGE)).toThrow(PageDeltaError);
  });
});

describe('page deltas in a sealed group', () => {
  const keys = { idKey: randomBytes(32), dataKeys: new Map([[1, randomBytes(32)]]), currentKeyId: 1 };
  const chunks = new ChunkCodec(keys, 3);

  it('a member gives its page only against its own base: another base, or no base, is a reason and never bytes', () => {
    fc.assert(
      fc.property(page, page, fc.uint8Array({ minLength: 24, maxLength: 24 }), edits, (base, other, header, changes) => {
        const p = edited(base, header, changes);
        const frame = chunks.deltaOf(p, base);
        fc.pre(frame !== undefined && !p.equals(base));
        const id = chunks.id(p);
        chunks.startBatch();
        const blob = Buffer.from(chunks.encodeDeltaGroup([{ id, base: chunks.id(base), rawLength: PAGE, frame: frame! }]));
        const found = chunks.findDelta(id, blob);
        expect(typeof found === 'string' ? found : found.base.equals(chunks.id(base))).toBe(true);
        expect(Buffer.from(chunks.decodeDelta(id, blob, base) as Buffer).equals(p)).toBe(true);
        if (!other.equals(base)) expect(typeof chunks.decodeDelta(id, blob, other)).toBe('string');
        expect(chunks.decode(id, blob)).toMatch(/page delta/);
        // A codec of its own: this one keeps the group it opened, known by its nonce and tag.
        const flipped = Buffer.from(blob);
        flipped[flipped.length - 20]! ^= 1;
        expect(typeof new ChunkCodec(keys, 3).decodeDelta(id, flipped, base)).toBe('string');
      }),
      { numRuns: 150 },
    );
  });
});
