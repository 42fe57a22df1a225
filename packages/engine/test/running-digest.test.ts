/**
 * The receiver's running SHA-256: whatever the cut points at which a
 * segment's bytes arrive, and however flushes of two segments alternate, the
 * digest given is that of the whole prefix — the one its record states and
 * wal-fetch checks.
 */
import { createHash } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { RunningDigest } from '../src/postgres/running-digest.js';

const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

describe('RunningDigest', () => {
  it('gives the SHA-256 of each prefix, whatever the cuts, and starts over on another segment or a shorter prefix', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 0, maxLength: 4096 }),
        fc.uint8Array({ minLength: 1, maxLength: 512 }),
        fc.array(fc.record({ segment: fc.constantFrom('A', 'B'), at: fc.nat() }), { maxLength: 30 }),
        (a, b, calls) => {
          const bytes = { A: a, B: b };
          const digest = new RunningDigest();
          const reached = { A: 0, B: 0 };
          for (const { segment, at } of calls) {
            const all = bytes[segment];
            // Mostly growing prefixes, as a stream gives them; sometimes a shorter one (a restart).
            const length = at % 5 === 0 ? at % (all.length + 1) : Math.min(all.length, reached[segment] + (at % 300));
            reached[segment] = length;
            expect(digest.of(segment, all.subarray(0, length))).toBe(sha(all.subarray(0, length)));
          }
        },
      ),
      { numRuns: 300 },
    );
  });
});
