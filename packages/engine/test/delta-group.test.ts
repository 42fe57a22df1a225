/**
 * The delta group layout: any set of members reads back exact (ids, bases,
 * sizes, frames) and each is found by its id; any other byte string — a
 * group cut short, extended, or with a byte changed — is refused with a
 * reason or read with every frame inside the plaintext, never a crash. With
 * real page deltas, each member's frame against its base gives its page back.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { DELTA_BASE_ID, decodeDeltaGroupHead, deltaFrame, encodeDeltaGroup, type DeltaMember } from '../src/format/delta-group.js';
import { findMember } from '../src/format/group-blob.js';
import { PageDelta } from '../src/format/page-delta.js';

const member = fc.record({
  id: fc.uint8Array({ minLength: 32, maxLength: 32 }),
  base: fc.uint8Array({ minLength: DELTA_BASE_ID, maxLength: DELTA_BASE_ID }),
  rawLength: fc.integer({ min: 1, max: 32768 }),
  frame: fc.uint8Array({ minLength: 0, maxLength: 300 }),
});
// Distinct id prefixes: a group holds each page once.
const members = fc.uniqueArray(member, { minLength: 1, maxLength: 40, selector: (m) => Buffer.from(m.id.subarray(0, 8)).toString('hex') });

describe('delta groups', () => {
  it('read back exact, and each member is found by its id', () => {
    fc.assert(
      fc.property(members, (ms) => {
        const plain = encodeDeltaGroup(ms);
        const dir = decodeDeltaGroupHead(plain);
        if (typeof dir === 'string') throw new Error(dir);
        ms.forEach((m, i) => {
          expect(findMember(dir, m.id, 0)).toBe(i);
          expect(dir.lengths[i]).toBe(m.rawLength);
          expect(Buffer.from(dir.bases[i]!).equals(Buffer.from(m.base))).toBe(true);
          expect(deltaFrame(plain, dir, i).equals(Buffer.from(m.frame))).toBe(true);
        });
      }),
      { numRuns: 300 },
    );
  });

  it('damaged, cut short or extended: a reason, or frames that stay inside the plaintext', () => {
    fc.assert(
      fc.property(members, fc.nat(), fc.integer({ min: 0, max: 255 }), fc.constantFrom('flip', 'cut', 'extend'), (ms, at, byte, how) => {
        const good = encodeDeltaGroup(ms);
        let bad: Buffer;
        if (how === 'flip') {
          bad = Buffer.from(good);
          const i = at % bad.length;
          bad[i] = bad[i]! ^ (byte || 1);
        } else if (how === 'cut') bad = good.subarray(0, at % good.length);
        else bad = Buffer.concat([good, Buffer.from([byte])]);
        const dir = decodeDeltaGroupHead(bad);
        if (how !== 'flip') expect(typeof dir).toBe('string');
        if (typeof dir === 'string') return;
        dir.frameOffsets.forEach((o, i) => {
          expect(o).toBeGreaterThanOrEqual(0);
          expect(o + dir.frameLengths[i]!).toBeLessThanOrEqual(bad.length);
        });
      }),
      { numRuns: 500 },
    );
  });

  it('refuses what no group holds: no members, a base id of another size, a page of no bytes', () => {
    const ok: DeltaMember = { id: new Uint8Array(32), base: new Uint8Array(32), rawLength: 8192, frame: new Uint8Array(3) };
    expect(() => encodeDeltaGroup([])).toThrow(RangeError);
    expect(() => encodeDeltaGroup([{ ...ok, base: new Uint8Array(16) }])).toThrow(RangeError);
    expect(() => encodeDeltaGroup([{ ...ok, rawLength: 0 }])).toThrow(RangeError);
    expect(decodeDeltaGroupHead(Buffer.from([3, 0, 1]))).toBe('has unknown encoding 3');
  });

  it('with real page deltas, each member decodes against its base to its page', () => {
    const codec = new PageDelta(3);
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.uint8Array({ minLength: 8192, maxLength: 8192 }), fc.array(fc.tuple(fc.integer({ min: 0, max: 8100 }), fc.uint8Array({ minLength: 1, maxLength: 64 })), { maxLength: 5 })), { minLength: 1, maxLength: 8 }), (pairs) => {
        const pages: Buffer[] = [];
        const bases: Buffer[] = [];
        const ms: DeltaMember[] = [];
        pairs.forEach(([bytes, edits], i) => {
          const base = Buffer.from(bytes);
          const page = Buffer.from(base);
          for (const [at, b] of edits) Buffer.from(b).copy(page, at);
          page.writeUInt32BE(i, 0);
          const frame = codec.encode(page, base, Infinity);
          if (!frame) return;
          pages.push(page);
          bases.push(base);
          ms.push({ id: Buffer.concat([Buffer.alloc(4), Buffer.from([i]), Buffer.alloc(27)]), base: Buffer.alloc(32, i), rawLength: page.length, frame: Buffer.from(frame) });
        });
        if (ms.length === 0) return;
        const plain = encodeDeltaGroup(ms);
        const dir = decodeDeltaGroupHead(plain);
        if (typeof dir === 'string') throw new Error(dir);
        ms.forEach((m, i) => {
          const back = codec.decode(deltaFrame(plain, dir, findMember(dir, m.id, 0)), bases[i]!, dir.lengths[i]!);
          expect(back.equals(pages[i]!)).toBe(true);
        });
      }),
      { numRuns: 60 },
    );
  });
});
