import { open, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backupFiles, collectList, FileStore, fileStorePath, LocalKeyProvider, Repository, restoreBackup, TargetNotEmptyError, type ObjectStore } from '@coffer/engine';
import { pseudoRandom, scratch, snapshot, treeArb, writeTree } from '../../../test/support/tree.js';

const provider = LocalKeyProvider.fromPassphrase('test passphrase');
let work: { dir: string; cleanup: () => Promise<void> };
let n = 0;
const fresh = (name: string) => join(work.dir, `${name}-${n++}`);

beforeAll(async () => {
  work = await scratch('coffer-br-');
});
afterAll(async () => work.cleanup());

async function storeBytes(store: ObjectStore): Promise<Map<string, number>> {
  return new Map((await collectList(store, '')).map((o) => [o.key, o.size]));
}

describe('backup → restore', () => {
  it('restores random trees byte-identically: contents, modes, symlinks, mtimes', async () => {
    await fc.assert(
      fc.asyncProperty(treeArb, fc.boolean(), async (tree, smallPacks) => {
        const src = fresh('src');
        await writeTree(src, tree);
        const store = new FileStore(fresh('repo'));
        // Small chunks and packs so that trees of kilobytes still span many chunks and packs.
        const repo = await Repository.init(store, provider, { chunker: { minSize: 256, avgSize: 1024, maxSize: 4096 }, packSize: smallPacks ? 64 * 1024 : 4 << 20 });
        const { key } = await backupFiles(repo, src);
        const out = fresh('out');
        const reopened = await Repository.open(store, provider);
        const result = await restoreBackup(reopened, key.slice(-64, -52), out);
        expect(result.key).toBe(key);
        expect(await snapshot(out)).toEqual(await snapshot(src));
      }),
      { numRuns: 25 },
    );
    // 25 backups and restores: minutes on a slow machine, beyond the suite's default limit.
  }, 600_000);

  it('the worker-thread pipeline stores and restores the same as the inline one', async () => {
    const src = fresh('src');
    await writeTree(src, [
      { kind: 'file', name: 'a.bin', content: pseudoRandom(3 << 20, 1), mode: 0o644, mtimeMs: 1_600_000_000_000 },
      { kind: 'file', name: 'b.bin', content: Buffer.concat([pseudoRandom(1 << 20, 2), pseudoRandom(2 << 20, 1)]), mode: 0o600, mtimeMs: 1_600_000_000_001 },
      { kind: 'file', name: 'c.bin', content: pseudoRandom(5 << 20, 3), mode: 0o644, mtimeMs: 1_600_000_000_002 },
    ]);
    const inlineStore = new FileStore(fresh('repo'));
    const pooledStore = new FileStore(fresh('repo'));
    const inline = await backupFiles(await Repository.init(inlineStore, provider, { packSize: 1 << 20 }), src, { workers: 0 });
    const pooledRepo = await Repository.init(pooledStore, provider, { packSize: 1 << 20 });
    const pooled = await backupFiles(pooledRepo, src, { workers: 2 });
    // Different id keys, so compare shapes: chunk counts per file and dedup totals.
    expect(pooled.manifest.entries.map((e) => e.chunks?.length)).toEqual(inline.manifest.entries.map((e) => e.chunks?.length));
    expect(pooled.manifest.stats.newChunks).toBe(inline.manifest.stats.newChunks);
    expect(pooled.manifest.stats.newBytes).toBeLessThan(pooled.manifest.stats.bytes); // b.bin repeats a.bin's first 2 MiB
    const out = fresh('out');
    await restoreBackup(pooledRepo, 'latest', out);
    expect(await snapshot(out)).toEqual(await snapshot(src));
  });

  it('restore on worker threads equals the inline restore, with ranges shared between workers; a damaged pack fails naming it', async () => {
    const src = fresh('src');
    // Repeated content: one file's chunks are used at many offsets and by several files, across pack boundaries.
    const block = pseudoRandom(300_000, 7);
    await writeTree(src, [
      { kind: 'file', name: 'a.bin', content: Buffer.concat([block, pseudoRandom(2 << 20, 8), block, block]), mode: 0o644, mtimeMs: 1_600_000_000_000 },
      { kind: 'file', name: 'b.bin', content: Buffer.concat([pseudoRandom(1 << 20, 9), block]), mode: 0o600, mtimeMs: 1_600_000_000_001 },
      { kind: 'file', name: 'empty', content: Buffer.alloc(0), mode: 0o644, mtimeMs: 1_600_000_000_002 },
      // 40 MiB that compress into one pack: a range that expands past 16 MiB is split between the workers.
      { kind: 'file', name: 'log.txt', content: Buffer.from(Array.from({ length: 700_000 }, (_, i) => `line ${i} of a log that compresses well\n`).join('')), mode: 0o644, mtimeMs: 1_600_000_000_003 },
    ]);
    const store = new FileStore(fresh('repo'));
    const repo = await Repository.init(store, provider);
    await backupFiles(repo, src);
    for (const workers of [0, 1, 2, 3]) {
      const out = fresh('out');
      const r = await restoreBackup(repo, 'latest', out, { workers });
      expect(await snapshot(out)).toEqual(await snapshot(src));
      expect(r.bytesWritten).toBe(r.bytes);
    }
    const packs = (await collectList(store, 'data/')).map((o) => o.key);
    const victim = packs[Math.floor(packs.length / 2)]!;
    const path = join(fileStorePath(store.properties.location), victim);
    const bytes = await readFile(path);
    bytes[100] = bytes[100]! ^ 1;
    await writeFile(path, bytes);
    const err = await restoreBackup(repo, 'latest', fresh('out'), { workers: 2 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Error);
    expect(String((err as Error).message)).toContain(victim);
  });

  it('a second backup of an unchanged tree adds only its manifest (with and without the parent shortcut)', async () => {
    await fc.assert(
      fc.asyncProperty(treeArb, fc.constantFrom('auto', 'none'), async (tree, parent) => {
        const src = fresh('src');
        await writeTree(src, tree);
        const store = new FileStore(fresh('repo'));
        const repo = await Repository.init(store, provider, { chunker: { minSize: 256, avgSize: 1024, maxSize: 4096 }, packSize: 64 * 1024 });
        await backupFiles(repo, src);
        const before = await storeBytes(store);
        const second = await backupFiles(repo, src, { parent });
        const after = await storeBytes(store);
        // Lease records (locks/) say who worked when; they hold no backup data.
        const added = [...after.keys()].filter((k) => !before.has(k) && !k.startsWith('locks/'));
        // Its manifest, and the manifest's catalogue summary.
        expect(added.sort()).toEqual([second.key, `catalogue/${second.key.slice('backups/'.length)}`].sort());
        expect(second.manifest.stats.newChunks).toBe(0);
      }),
      { numRuns: 15 },
    );
  });

  it('inserting 1 KiB into the middle of a 64 MiB file adds less than 1 MiB to the repository', async () => {
    const src = fresh('src');
    const store = new FileStore(fresh('repo'));
    const repo = await Repository.init(store, provider);
    const original = pseudoRandom(64 << 20, 42);
    await writeTree(src, [{ kind: 'file', name: 'big.dat', content: original, mode: 0o644, mtimeMs: 1_650_000_000_000 }]);
    await backupFiles(repo, src);
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 16 << 20, max: 48 << 20 }), fc.integer({ min: 1, max: 2 ** 31 }), async (at, seed) => {
        const inserted = Buffer.concat([original.subarray(0, at), pseudoRandom(1024, seed), original.subarray(at)]);
        await writeFile(join(src, 'big.dat'), inserted);
        const before = await storeBytes(store);
        const r = await backupFiles(repo, src);
        const after = await storeBytes(store);
        let added = 0;
        for (const [k, size] of after) if (!before.has(k)) added += size;
        expect(added).toBeLessThan(1 << 20);
        expect(r.manifest.stats.newBytes).toBeLessThan(1 << 20);
        await writeFile(join(src, 'big.dat'), original);
      }),
      { numRuns: 4 },
    );
    // Back to the original bytes: nothing new to store, and the latest backup restores them.
    const back = await backupFiles(repo, src, { parent: 'none' });
    expect(back.manifest.stats.newChunks).toBe(0);
    const out = fresh('out');
    await restoreBackup(repo, 'latest', out);
    expect((await readFile(join(out, 'big.dat'))).equals(await readFile(join(src, 'big.dat')))).toBe(true);
  });

  it('restores an older backup whose chunks are scattered over packs (ranged reads), exactly', async () => {
    const src = fresh('src');
    const store = new FileStore(fresh('repo'));
    const repo = await Repository.init(store, provider, { chunker: { minSize: 1024, avgSize: 4096, maxSize: 16384 }, packSize: 256 * 1024 });
    const files = Array.from({ length: 12 }, (_, i) => ({ kind: 'file' as const, name: `f${i}`, content: pseudoRandom(200_000, i + 1), mode: 0o644, mtimeMs: 1_600_000_000_000 + i }));
    await writeTree(src, files);
    const first = await backupFiles(repo, src);
    const firstSnap = await snapshot(src);
    // Rewrite every other file, so the second backup's packs interleave with the first's.
    for (let i = 0; i < 12; i += 2) await writeFile(join(src, `f${i}`), pseudoRandom(200_000, 100 + i));
    const second = await backupFiles(repo, src);
    const secondSnap = await snapshot(src);
    const outA = fresh('out');
    const outB = fresh('out');
    const ra = await restoreBackup(repo, first.key, outA, { plan: { mergeGap: 0 } });
    const rb = await restoreBackup(repo, second.key, outB);
    expect(await snapshot(outA)).toEqual(firstSnap);
    expect(await snapshot(outB)).toEqual(secondSnap);
    // The first backup owns its packs whole; the second needs parts of them, read as ranges.
    expect(ra.rangedRequests).toBe(0);
    expect(rb.rangedRequests).toBeGreaterThan(0);
    expect(rb.bytesFetched).toBeLessThan(ra.bytesFetched * 2);
  });

  it('a restore refuses a non-empty target and writes nothing into it', async () => {
    const src = fresh('src');
    await writeTree(src, [{ kind: 'file', name: 'x', content: Buffer.from('x'), mode: 0o644, mtimeMs: 1_600_000_000_000 }]);
    const repo = await Repository.init(new FileStore(fresh('repo')), provider);
    await backupFiles(repo, src);
    const out = fresh('out');
    await writeTree(out, [{ kind: 'file', name: 'keep', content: Buffer.from('mine'), mode: 0o644, mtimeMs: 1_600_000_000_000 }]);
    await expect(restoreBackup(repo, 'latest', out)).rejects.toBeInstanceOf(TargetNotEmptyError);
    expect([...(await snapshot(out)).keys()]).toEqual(['.', 'keep']);
  });

  it('a file that grows while being read is stored as read, and the size recorded matches', async () => {
    const src = fresh('src');
    await writeTree(src, [{ kind: 'file', name: 'log', content: pseudoRandom(1 << 20, 9), mode: 0o644, mtimeMs: 1_600_000_000_000 }]);
    const fh = await open(join(src, 'log'), 'a');
    await fh.write(pseudoRandom(1000, 10));
    await fh.close();
    const repo = await Repository.init(new FileStore(fresh('repo')), provider);
    const r = await backupFiles(repo, src);
    const entry = r.manifest.entries.find((e) => e.path === 'log')!;
    expect(entry.size).toBe((1 << 20) + 1000);
  });
});
