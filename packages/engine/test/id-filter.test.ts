/** The live-chunk filter garbage collection decides with: never "no" for an id added, and about as many false "maybe"s as sized for. */
import { randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { IdFilter } from '@coffer/engine';

describe('IdFilter', () => {
  it('answers maybe for every id added, whatever the sizes (no false negatives)', () => {
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ minLength: 32, maxLength: 32 }), { minLength: 1, maxLength: 300 }), fc.integer({ min: 8, max: 4096 }), (ids, bytes) => {
        const f = new IdFilter(bytes, ids.length);
        for (const id of ids) f.add(id);
        return ids.every((id) => f.mayHave(id));
      }),
      { numRuns: 300 },
    );
  });

  it('checks ids in place inside a larger buffer', () => {
    const ids = randomBytes(32 * 100);
    const f = IdFilter.sized(100, 0.01, 1 << 20);
    f.addAll(ids);
    for (let at = 0; at < ids.length; at += 32) expect(f.mayHave(ids, at)).toBe(true);
  });

  it('keeps false positives near the rate it was sized for', () => {
    const n = 20_000;
    const f = IdFilter.sized(n, 0.01, 1 << 24);
    for (let i = 0; i < n; i++) f.add(randomBytes(32));
    let hits = 0;
    const trials = 20_000;
    for (let i = 0; i < trials; i++) if (f.mayHave(randomBytes(32))) hits++;
    expect(hits / trials).toBeLessThan(0.02);
    expect(f.falsePositiveRate).toBeLessThan(0.015);
  });

  it('stays within its memory cap, trading a higher rate for it', () => {
    const f = IdFilter.sized(1_000_000, 0.001, 64 * 1024);
    expect(f.bytes).toBeLessThanOrEqual(64 * 1024);
  });
});
