/**
 * The read ceiling (`--max-rate`): however many threads take from it and in
 * whatever sizes, the bytes let through by any moment stay within the rate
 * (plus the first read, paid for after it is made); a backup read through it
 * takes as long as the rate says, across worker threads too.
 */
import fc from 'fast-check';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { backupFiles, FileStore, LocalKeyProvider, parseByteRate, parseByteSize, ReadPacer, Repository } from '@coffer/engine';

describe('ReadPacer', () => {
  it('never lets more through than the rate allows, whatever the takers and sizes', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(fc.array(fc.integer({ min: 0, max: 100_000 }), { minLength: 1, maxLength: 6 }), { minLength: 1, maxLength: 4 }), async (takers) => {
        const rate = 8_000_000;
        const pacer = new ReadPacer(rate);
        const t0 = Date.now();
        const done: { at: number; bytes: number }[] = [];
        await Promise.all(
          takers.map(async (sizes) => {
            for (const bytes of sizes) {
              await pacer.take(bytes);
              done.push({ at: Date.now(), bytes });
            }
          }),
        );
        // Reservations follow one another from t0 on, and a take returns once its own has begun (less under 1 ms
        // of timer rounding, and Date.now's 1 ms steps). So by the time T of any return, the takes that returned
        // began by T: together they hold at most rate × (T − t0) plus the one reservation still running at T —
        // whichever of them returned, however late the event loop let each continue (a busy machine makes some late).
        const sorted = [...done].sort((a, b) => a.at - b.at);
        let upTo = 0;
        let biggest = 0;
        for (const d of sorted) {
          upTo += d.bytes;
          biggest = Math.max(biggest, d.bytes);
          expect(upTo - biggest).toBeLessThanOrEqual((rate * (d.at - t0 + 5)) / 1000);
        }
      }),
      { numRuns: 15 },
    );
  });

  it('paces threads together through its shared state', async () => {
    const a = new ReadPacer(10_000_000);
    const b = new ReadPacer(10_000_000, a.shared);
    const t0 = Date.now();
    await Promise.all([a.take(1_000_000), b.take(1_000_000), a.take(1_000_000), b.take(1_000_000)]);
    // Four takes of 0.1 s each: the last may start no sooner than 0.3 s after the first.
    expect(Date.now() - t0).toBeGreaterThanOrEqual(290);
  });

  it('reads rates as operators write them, and refuses the rest', () => {
    expect(parseByteRate('200MB')).toBe(200e6);
    expect(parseByteRate('1.5GiB')).toBe(1.5 * 1024 ** 3);
    expect(parseByteRate('500 KB/s')).toBe(500e3);
    for (const bad of ['', '0MB', 'fast', '-1MB', '10 parsecs', 'MB']) expect(parseByteRate(bad)).toBeUndefined();
    expect(() => new ReadPacer(0)).toThrow(RangeError);
  });

  it('reads sizes as operators write them (terabytes too), and refuses rates and the rest', () => {
    expect(parseByteSize('2TB')).toBe(2e12);
    expect(parseByteSize('1.5 TiB')).toBe(1.5 * 1024 ** 4);
    expect(parseByteSize('500GB')).toBe(500e9);
    for (const bad of ['', '0GB', '12', 'big', '5GB/s', 'TB']) expect(parseByteSize(bad), bad).toBeUndefined();
  });

  it('a backup with a ceiling takes as long as its rate says, on worker threads too', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'coffer-pacer-'));
    try {
      // Many small files and a large one: small files cost what they hold, not a read buffer's size.
      await writeFile(join(dir, 'big'), Buffer.alloc(6_000_000, 7));
      for (let i = 0; i < 200; i++) await writeFile(join(dir, `small-${i}`), `file ${i}`);
      const repo = await Repository.init(new FileStore(join(dir, 'repo')), [LocalKeyProvider.fromPassphrase('pacer')]);
      for (const workers of [0, 2]) {
        const t0 = performance.now();
        await backupFiles(repo, join(dir), { workers, parent: 'none', exclude: ['repo'], maxBytesPerSecond: 12_000_000 });
        const seconds = (performance.now() - t0) / 1000;
        // 6 MB at 12 MB/s: half a second at least (the first read is free), and not the hours a buffer-sized charge per small file would take.
        expect(seconds, `workers ${workers}`).toBeGreaterThan(0.3);
        expect(seconds, `workers ${workers}`).toBeLessThan(10);
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
