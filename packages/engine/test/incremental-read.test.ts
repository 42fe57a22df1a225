/**
 * Incremental read-data and its ledger: the first run reads every pack, the
 * next only what is new (plus its sample); a pack not proved for the age
 * limit is due again; a damaged pack is named and not recorded as proved;
 * the ledger folds its objects into one as they pile up; and a ledger object
 * that was edited is refused, so no one can make a pack look proved.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, open, readdir, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backupFiles, CorruptObjectError, FileStore, LocalKeyProvider, readDataIncrementally, readPackLedger, Repository } from '@coffer/engine';
import { scratchWithKey } from '../../../test/support/keys.js';

let work: { dir: string; cleanup: () => Promise<void> };
let keys: LocalKeyProvider;
beforeAll(async () => {
  ({ work, keys } = await scratchWithKey('coffer-incremental-read-'));
});
afterAll(async () => {
  await work.cleanup();
});

const DAY = 86_400_000;
const never = () => 1;

async function repoWithData(name: string): Promise<{ repo: Repository; root: string; src: string }> {
  const root = join(work.dir, name);
  const src = join(work.dir, `${name}-src`);
  await mkdir(src, { recursive: true });
  const repo = await Repository.init(new FileStore(root), keys, { packSize: 64 * 1024 });
  for (let i = 0; i < 8; i++) await writeFile(join(src, `f${i}`), randomBytes(40 * 1024));
  await backupFiles(repo, src);
  return { repo, root, src };
}

async function packFiles(root: string): Promise<string[]> {
  const out: string[] = [];
  for (const d of await readdir(join(root, 'data'))) for (const f of await readdir(join(root, 'data', d))) out.push(join(root, 'data', d, f));
  return out;
}

describe('incremental read-data', () => {
  it('reads every pack once, then only new ones; a pack whose proof grew old is due again', async () => {
    const { repo, root, src } = await repoWithData('r1');
    const t0 = new Date('2026-06-01T00:00:00Z');
    const first = await readDataIncrementally(repo, { now: t0, random: never });
    expect(first.packs).toBe((await packFiles(root)).length);
    expect(first.read).toBe(first.packs);
    expect(first.bytesRead).toBe(first.packBytes);
    expect(first.problems).toEqual([]);
    expect(first.ledger).toMatch(/^ledger\//);

    await writeFile(join(src, 'new'), randomBytes(30 * 1024));
    await backupFiles(repo, src);
    const before = new Set(await packFiles(root));
    const second = await readDataIncrementally(repo, { now: new Date(t0.getTime() + DAY), random: never });
    const added = second.packs - first.packs;
    expect(added).toBeGreaterThan(0);
    expect(second.read).toBe(added);
    expect(second.due).toBe(added);
    expect(second.bytesRead).toBeLessThan(second.packBytes / 3);
    expect(before.size).toBe(second.packs);

    // A sample of 100% reads what is not due as well; nothing is due the same day.
    const all = await readDataIncrementally(repo, { now: new Date(t0.getTime() + DAY), samplePercent: 100, random: () => 0.5 });
    expect(all.due).toBe(0);
    expect(all.sampled).toBe(all.packs);

    // 31 days after the first run, the packs proved then (and not sampled since) are due again.
    const later = await readDataIncrementally(repo, { now: new Date(t0.getTime() + 32 * DAY), random: never });
    expect(later.due).toBe(later.packs);
  });

  it('a damaged pack is named and stays due; the others are recorded as proved', async () => {
    const { repo, root } = await repoWithData('r2');
    const packs = await packFiles(root);
    const victim = packs[0]!;
    const fh = await open(victim, 'r+');
    const b = Buffer.alloc(1);
    await fh.read(b, 0, 1, 100);
    b[0] = b[0]! ^ 1;
    await fh.write(b, 0, 1, 100);
    await fh.close();
    const now = new Date('2026-06-01T00:00:00Z');
    const r = await readDataIncrementally(repo, { now, random: never });
    expect(r.problems).toHaveLength(1);
    expect(r.problems[0]).toContain(victim.split('/').pop()!);
    const ledger = await readPackLedger(repo);
    expect(ledger.proved.size).toBe(packs.length - 1);
    expect(ledger.proved.has(victim.split('/').pop()!)).toBe(false);
    const again = await readDataIncrementally(repo, { now, random: never });
    expect(again.read).toBe(1);
    expect(again.problems).toHaveLength(1);
  });

  it('the ledger folds its objects into one when they pile up, keeping every proof', async () => {
    const { repo, root, src } = await repoWithData('r3');
    let now = Date.parse('2026-06-01T00:00:00Z');
    for (let i = 0; i < 33; i++) {
      await writeFile(join(src, `more-${i}`), randomBytes(20 * 1024));
      await backupFiles(repo, src);
      now += 60_000;
      await readDataIncrementally(repo, { now: new Date(now), random: never });
    }
    const ledger = await readPackLedger(repo);
    expect(ledger.keys.length).toBeLessThan(4);
    expect(ledger.proved.size).toBe((await packFiles(root)).length);
    const quiet = await readDataIncrementally(repo, { now: new Date(now + 60_000), random: never });
    expect(quiet.read).toBe(0);
  });

  it('an edited ledger object is refused, naming it', async () => {
    const { repo, root } = await repoWithData('r4');
    const r = await readDataIncrementally(repo, { random: never });
    const path = join(root, r.ledger!);
    const size = (await stat(path)).size;
    const fh = await open(path, 'r+');
    await fh.write(Buffer.from([0x42]), 0, 1, size - 5);
    await fh.close();
    await expect(readPackLedger(repo)).rejects.toThrow(CorruptObjectError);
    await expect(readPackLedger(repo)).rejects.toThrow(r.ledger!);
  });
});
