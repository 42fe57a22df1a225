/**
 * The selective mirror: only what the named backups need goes into another
 * store, which then opens as the same repository and restores them on its
 * own, checks clean, and is smaller; a second run copies nothing.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backupFiles, checkRepository, collectList, LocalKeyProvider, MemoryStore, mirrorBackups, Repository, restoreBackup, setKeepMark, type ObjectStore } from '@coffer/engine';
import { scratch, snapshot } from '../../../test/support/tree.js';

let work: { dir: string; cleanup: () => Promise<void> };
beforeAll(async () => {
  work = await scratch('coffer-mirror-backups-');
});
afterAll(async () => work.cleanup());

const bytesUnder = async (store: ObjectStore, prefix: string) => (await collectList(store, prefix)).reduce((n, o) => n + o.size, 0);

describe('mirror of chosen backups', () => {
  it('copies what they need and nothing else; the copy restores them alone', async () => {
    const provider = LocalKeyProvider.fromPassphrase('selective');
    const source = new MemoryStore();
    const repo = await Repository.init(source, provider, { chunker: { minSize: 256, avgSize: 1024, maxSize: 4096 }, packSize: 64 * 1024 });
    const src = join(work.dir, 'src');
    await mkdir(src);
    const snaps: Awaited<ReturnType<typeof snapshot>>[] = [];
    const keys: string[] = [];
    await writeFile(join(src, 'shared.bin'), randomBytes(100_000));
    for (let i = 0; i < 3; i++) {
      await writeFile(join(src, `only-${i}.bin`), randomBytes(150_000));
      await rm(join(src, `only-${i - 1}.bin`), { force: true });
      keys.push((await backupFiles(repo, src, { tags: [`week-${i}`] })).key);
      snaps.push(await snapshot(src));
    }
    await setKeepMark(repo, keys[0]!, true, 'cold');

    const cold = new MemoryStore();
    const report = await mirrorBackups(repo, cold, ['week-0']);
    expect(report.ok).toBe(true);
    expect(report.backups).toEqual([keys[0]]);
    expect(report.indexObjects.length).toBeGreaterThan(0);

    const copy = await Repository.open(cold, provider);
    expect((await copy.listBackups()).map((b) => b.key)).toEqual([keys[0]]);
    const check = await checkRepository(copy, { readData: true });
    expect(check.problems.map((p) => p.message)).toEqual([]);
    const out = join(work.dir, 'out');
    await restoreBackup(copy, keys[0]!, out);
    expect(await snapshot(out)).toEqual(snaps[0]);
    expect((await collectList(cold, 'keep/')).length).toBe(1);
    // The other backups' own data stayed behind.
    expect(await bytesUnder(cold, 'data/')).toBeLessThan((await bytesUnder(source, 'data/')) * 0.7);

    const again = await mirrorBackups(repo, cold, [keys[0]!]);
    expect(again.copied).toBe(0);
    expect(again.indexObjects).toEqual([]);
  });
});
