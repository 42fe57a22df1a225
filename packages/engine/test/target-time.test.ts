import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { InvalidArgumentError, parseTargetTime } from '@coffer/engine';

describe('recovery target times', () => {
  it('take an offset, Z, or UTC as a server logging in UTC writes it (copied from the log as it is)', () => {
    const t = Date.UTC(2026, 11, 1, 21, 30, 0, 123);
    for (const text of ['2026-12-01 21:30:00.123+00', '2026-12-01 21:30:00.123+00:00', '2026-12-01T21:30:00.123Z', '2026-12-01 21:30:00.123 UTC', '2026-12-01 21:30:00.123 GMT', '2026-12-01 22:30:00.123+01', '2026-12-01 16:30:00.123-0500']) {
      expect(parseTargetTime(text), text).toBe(t);
    }
    fc.assert(
      fc.property(fc.integer({ min: Date.UTC(2000, 0, 1), max: Date.UTC(2100, 0, 1) }), (ms) => {
        const logged = `${new Date(ms).toISOString().replace('T', ' ').replace('Z', '')} UTC`;
        expect(parseTargetTime(logged)).toBe(ms);
      }),
    );
  });

  it('refuse a time without a zone, or with a zone name that means several (CST), naming the option', () => {
    for (const text of ['2026-12-01 21:30:00', '2026-12-01 21:30:00 CST', '2026-12-01 21:30:00 CET', 'yesterday UTC']) {
      expect(() => parseTargetTime(text), text).toThrow(InvalidArgumentError);
      expect(() => parseTargetTime(text), text).toThrow('--target-time');
    }
  });
});
