/**
 * Power loss: a kill does not test fsync, so the commands that write run
 * here with an interposed file layer (test/support/power-loss-recorder.mjs)
 * that journals what each fsync made durable. Then, for moments drawn inside
 * each command's run, the repository is rebuilt as a machine that lost power
 * right then would find it — only what was synced, a new name only once its
 * directory was synced — and must hold everything acknowledged before that
 * moment: `check --read-data` passes, the backups retention keeps are listed
 * and restore exactly, archived WAL comes back, added keys open it; and
 * backing up and archiving again on it succeed. Right after each command
 * returns, the rebuilt repository is the repository: what it acknowledged,
 * deletes too, is on disk (a delete that was not, an expired backup, came
 * back after a power cut and named packs gc had deleted: fixed by syncing
 * the directory in FileStore.delete).
 *
 * `sized(1, 8)` cuts per command: a short run under `npm test`, more under
 * `npm run chaos -- --long`.
 */
import { randomBytes } from 'node:crypto';
import { readdir, realpath, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { coffer } from '../support/cli.js';
import { differences, PowerJournal, storedFiles } from '../support/power-loss.js';
import { scratch } from '../support/tree.js';
import { Workbench, type Acknowledged, type Op } from '../support/workbench.js';
import { addFigures, sized } from './figures.js';

const OPS: Op[] = ['backup', 'wal-push', 'backup', 'key-add', 'wal-push', 'backup', 'expire', 'gc', 'key-rotate', 'backup', 'restore', 'mirror', 'wal-push'];
const CUTS_PER_OP = sized(1, 8);

let work: { dir: string; cleanup: () => Promise<void> };
let keyFile: string;

beforeAll(async () => {
  work = await scratch('coffer-power-');
  work.dir = await realpath(work.dir);
  keyFile = join(work.dir, 'key');
  await writeFile(keyFile, randomBytes(32).toString('base64'), { mode: 0o600 });
});
afterAll(async () => work.cleanup());

/** What must survive a power cut during a command: what was acknowledged before it and is still kept after it. */
function survivors(before: Acknowledged, after: Acknowledged): Acknowledged {
  const kept = new Set(after.backups.map((b) => b.id));
  return { backups: before.backups.filter((b) => kept.has(b.id)), segments: before.segments, addedKeys: before.addedKeys };
}

describe('power loss', () => {
  it(`whatever was acknowledged before the power went survives, and the repository works on (${OPS.length * CUTS_PER_OP} cuts)`, async () => {
    const dir = join(work.dir, 'bench');
    const journal = new PowerJournal(join(dir, 'repo'), join(work.dir, 'journal.jsonl'));
    const bench = await Workbench.create(dir, keyFile, 7, journal.env);
    const runs: { op: Op; from: number; to: number; must: Acknowledged }[] = [];
    for (const op of OPS) {
      const from = await journal.length();
      const before = bench.acknowledged();
      const s = await bench.start(op, 2);
      const r = await s.done;
      expect(r.status, `${op}: ${r.stderr}`).toBe(0);
      await s.after(r);
      const to = await journal.length();
      runs.push({ op, from, to, must: survivors(before, bench.acknowledged()) });
      // What the command acknowledged, its deletes too, is on disk when it returns: power lost right then changes nothing.
      await journal.imageAt(to, join(work.dir, 'image'));
      const lost = differences(await storedFiles(bench.repo), await storedFiles(join(work.dir, 'image')));
      expect(lost, `${op}: what it acknowledged, on disk`).toEqual([]);
    }
    const total = await journal.length();
    const finalFiles = (await readdir(bench.repo, { recursive: true })).length;
    let cuts = 0;
    let shortImages = 0;
    for (const run of runs) {
      for (let c = 0; c < CUTS_PER_OP; c++) {
        // A moment inside the command's run: after one of its fsyncs, or before its first.
        const k = run.from + Math.floor(Math.random() * (run.to - run.from + 1));
        const image = join(work.dir, 'image');
        await journal.imageAt(k, image);
        if ((await readdir(image, { recursive: true })).length < finalFiles) shortImages++;
        const when = `power lost after fsync ${k} of ${total}, during ${run.op}`;
        await bench.verify(when, { repo: image, acked: run.must });
        // Work goes on on what the disk kept: a backup, the newest segment archived again (or for the first time), a check.
        const b = await coffer(['--repo', image, '-q', 'backup', '--path', join(dir, 'src')], bench.env);
        expect(b.status, `${when}: backup after: ${b.stderr}`).toBe(0);
        const walDir = join(dir, 'pgdata', 'pg_wal');
        const newest = (await readdir(walDir)).filter((n) => /^[0-9A-F]{24}$/.test(n)).sort().pop();
        if (newest) {
          const w = await coffer(['--repo', image, '-q', 'wal-push', '--ahead', '0', join(walDir, newest)], bench.env);
          expect(w.status, `${when}: wal-push after: ${w.stderr}`).toBe(0);
        }
        const check = await coffer(['--repo', image, '-q', 'check', '--read-data'], bench.env);
        expect(check.status, `${when}: check after new work: ${check.stdout}${check.stderr}`).toBe(0);
        await rm(image, { recursive: true, force: true });
        cuts++;
      }
    }
    // The simulation takes things away: images short of what the repository holds, and names left without their content.
    expect(shortImages).toBeGreaterThan(0);
    await addFigures('power-loss', { powerCuts: cuts });
  }, 3_600_000);

  it('catches a store that does not sync directories: what it acknowledged is gone after a power cut', async () => {
    const dir = join(work.dir, 'careless');
    const journal = new PowerJournal(join(dir, 'repo'), join(work.dir, 'careless.jsonl'));
    const bench = await Workbench.create(dir, keyFile, 8, { ...journal.env, COFFER_TEST_POWER_IGNORE_DIRS: '1' });
    const s = await bench.start('backup');
    const r = await s.done;
    expect(r.status, r.stderr).toBe(0);
    await s.after(r);
    const image = join(work.dir, 'careless-image');
    await journal.imageAt(await journal.length(), image);
    // Its packs' contents were synced; only the names were not.
    expect(await journal.length()).toBeGreaterThan(0);
    await expect(bench.verify('a backup whose directory entries were never synced', { repo: image })).rejects.toThrow();
  }, 600_000);
});
