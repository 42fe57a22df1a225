/**
 * The prefetcher that follows recovery: it keeps the segments after the last
 * one restore_command asked for in the spool — in order, byte for byte, never
 * more than its queue allows; at the archive's end it spools the last segment
 * again and marks it to keep, while it stays.
 */
import { randomBytes } from 'node:crypto';
import { copyFile, mkdir, readdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FileStore, LocalKeyProvider, prefetcherRunning, Repository, SPOOL_WANTED, walFetch, walPrefetch, WalStreamArchiver } from '@coffer/engine';
import { scratch } from '../../../test/support/tree.js';
import { segment, segmentName } from '../../../test/support/wal.js';

const SYS = 7_300_000_000_000_000_999n;
const SEG = 1024 * 1024;
const scope = { stanza: 'main', systemIdentifier: SYS.toString() };

let work: { dir: string; cleanup: () => Promise<void> };
let repo: Repository;
const archived = new Map<string, Buffer>();
const COUNT = 12;
beforeAll(async () => {
  work = await scratch('coffer-wal-prefetch-');
  await writeFile(join(work.dir, 'key'), randomBytes(32).toString('hex'));
  repo = await Repository.init(new FileStore(join(work.dir, 'repo')), [await LocalKeyProvider.fromKeyFile(join(work.dir, 'key'))]);
  const archiver = new WalStreamArchiver(repo, { systemIdentifier: SYS.toString() });
  for (let i = 1; i <= COUNT; i++) {
    const bytes = segment(SYS, i, SEG);
    randomBytes(4096).copy(bytes, 8192);
    await archiver.file(segmentName(i), bytes);
    archived.set(segmentName(i), bytes);
  }
  await archiver.close();
});
afterAll(async () => {
  await work.cleanup();
});

describe('walPrefetch following recovery', () => {
  it('keeps the next segments spooled in order, never more than the queue holds, whatever the pace of recovery; stops at the archive end', async () => {
    let run = 0;
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: 4 }), fc.integer({ min: 1, max: 3 }), fc.array(fc.integer({ min: 0, max: 30 }), { minLength: COUNT, maxLength: COUNT }), async (queue, parallel, pauses) => {
        const spool = join(work.dir, `spool-${run++}`);
        const dest = join(work.dir, `RECOVERYXLOG-${run}`);
        // Recovery has just restored segment 1 (served without the spool) and starts the prefetcher at segment 2.
        const prefetch = walPrefetch(repo, scope, [segmentName(2)], spool, { queueBytes: queue * SEG, parallel, segmentBytes: SEG, idleExitMs: 5000, lingerMs: 0 });
        let most = 0;
        for (let i = 2; i <= COUNT; i++) {
          const name = segmentName(i);
          const spooled = join(spool, name);
          const end = Date.now() + 20_000;
          for (;;) {
            const have = (await readdir(spool).catch(() => [] as string[])).filter((n) => /^[0-9A-F]{24}$/.test(n));
            most = Math.max(most, have.length);
            if (have.includes(name)) break;
            if (Date.now() > end) throw new Error(`${name} never spooled`);
            await new Promise((r) => setTimeout(r, 5));
          }
          // As restore_command does: move it into place, note where recovery stands.
          await rename(spooled, dest);
          await writeFile(join(spool, SPOOL_WANTED), name);
          expect((await readFile(dest)).equals(archived.get(name)!)).toBe(true);
          await new Promise((r) => setTimeout(r, pauses[i - 1]!));
        }
        const fetched = await prefetch;
        expect(fetched.sort()).toEqual([...archived.keys()].filter((n) => n >= segmentName(2)).sort());
        expect(most).toBeLessThanOrEqual(queue);
      }),
      { numRuns: 6 },
    );
  }, 120_000);

  it("serving a segment clears the spool before it, and leaves the prefetcher's writes of later segments in flight alone", async () => {
    const spool = join(work.dir, 'spool-tmp');
    await mkdir(spool);
    const earlier = `.${segmentName(1)}.0a0b0c0d.coffer-tmp`;
    const later = `.${segmentName(5)}.0a0b0c0d.coffer-tmp`;
    for (const n of [earlier, later, segmentName(2)]) await writeFile(join(spool, n), 'x');
    const r = await walFetch(repo, scope, segmentName(3), join(work.dir, 'RECOVERYXLOG-tmp'), { spoolDir: spool });
    expect(r.outcome).toBe('archive');
    const left = await readdir(spool);
    expect(left).toContain(later);
    expect(left).not.toContain(earlier);
    expect(left).not.toContain(segmentName(2));
  });

  it("at the archive's end: the last segment spooled again and marked to keep, the next noted as not found (for calls not to wait), while it stays; all gone with it", async () => {
    const spool = join(work.dir, 'spool-end');
    const last = segmentName(COUNT);
    const prefetch = walPrefetch(repo, scope, [last], spool, { queueBytes: 4 * SEG, parallel: 2, segmentBytes: SEG, idleExitMs: 5000, lingerMs: 1500 });
    const seen = async () => readdir(spool).catch(() => [] as string[]);
    const until = Date.now() + 20_000;
    while (!(await seen()).includes(last) && Date.now() < until) await new Promise((r) => setTimeout(r, 5));
    // As restore_command does with it: moved into place, or copied when the prefetcher has already marked it
    // to keep (it may reach the archive's end first); then recovery asks for the next, which is not archived.
    const taken = join(work.dir, 'RECOVERYXLOG-end');
    if ((await seen()).includes(`.${last}.keep`)) await copyFile(join(spool, last), taken);
    else {
      await rename(join(spool, last), taken);
      // Marked to keep while it was being moved: restore_command would have copied it.
      if ((await seen()).includes(`.${last}.keep`)) await copyFile(taken, join(spool, last));
    }
    await writeFile(join(spool, SPOOL_WANTED), last);
    const next = segmentName(COUNT + 1);
    while (!(await seen()).includes(`.${last}.keep`) && Date.now() < until) await new Promise((r) => setTimeout(r, 5));
    const during = await seen();
    expect(during).toEqual(expect.arrayContaining([last, `.${last}.keep`]));
    expect(during).toContain(`.${next}.absent`);
    expect(during).not.toContain(next);
    expect(await prefetcherRunning(spool)).toBe(true);
    expect((await readFile(join(spool, last))).equals(archived.get(last)!)).toBe(true);
    await prefetch;
    const after = await seen();
    expect(after.filter((n) => n.endsWith('.absent') || n.endsWith('.keep'))).toEqual([]);
    expect(after).not.toContain(last);
  }, 60_000);
});
