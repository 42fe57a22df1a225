/**
 * Page deltas, written by backups: a daily backup stores the pages changed
 * since its parent as deltas against the parent's versions (on worker
 * threads and inline alike), within the repository's chain depth, and every
 * backup of the history restores byte-identically; a repository made
 * without deltas stores the same days whole, and takes several times the
 * bytes; a base a running collection condemned is never taken.
 */
import { readFile, writeFile, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { collectList, LocalKeyProvider, MemoryStore, reencryptInitOptions, reencryptRepository, Repository, restoreBackup, type BackupSummary, type TreeEntry } from '@coffer/engine';
// Internals: a tree whose one file is chunked in pages, as a PostgreSQL relation file is.
import { backupTree, type TreeSource } from '../dist/backup/backup-files.js';
import { writeCondemned } from '../dist/repository/condemned.js';
import { scratch } from '../../../test/support/tree.js';
import { editPage, heapPage as page, PAGE } from '../../../test/support/pages.js';

const provider = LocalKeyProvider.fromPassphrase('page delta backup test');
let work: { dir: string; cleanup: () => Promise<void> };
let n = 0;
const fresh = (name: string) => join(work.dir, `${name}-${n++}`);

beforeAll(async () => {
  work = await scratch('coffer-pdb-');
});
afterAll(async () => work.cleanup());

function source(root: string): TreeSource {
  return { kind: 'files', root, checkStable: false, walk: {}, isParent: (b: BackupSummary) => b.kind === 'files' && b.source === root, isRelation: (e: TreeEntry) => e.path === 'rel' };
}

/** Days of a relation of `pages` pages: `edits(day, k)` says whether page k changes that day. Returns each day's manifest key, stats and content. */
async function days(repo: Repository, pages: number, count: number, edits: (day: number, k: number) => boolean, workers: (day: number) => number) {
  const src = fresh('src');
  await mkdir(src, { recursive: true });
  let content = Array.from({ length: pages }, (_, k) => page(k + 1));
  const out: { key: string; deltaPages: number; storedBytes: number; content: Buffer }[] = [];
  for (let d = 0; d < count; d++) {
    if (d > 0) content = content.map((p, k) => (edits(d, k) ? editPage(p, 176 + ((d * 10_000 + k) % 7000), d * 10_000 + k) : p));
    const bytes = Buffer.concat(content);
    await writeFile(join(src, 'rel'), bytes);
    const { key, manifest } = await backupTree(repo, source(src), { workers: workers(d) });
    out.push({ key, deltaPages: manifest.stats.deltaPages ?? 0, storedBytes: manifest.stats.storedBytes, content: bytes });
  }
  return out;
}

async function restored(repo: Repository, key: string): Promise<Buffer> {
  const out = fresh('out');
  await restoreBackup(repo, key, out);
  return readFile(join(out, 'rel'));
}

describe('page deltas, written', () => {
  it('daily backups store changed pages as deltas within the chain depth, inline and on workers, and every day restores exactly', async () => {
    const repo = await Repository.init(new MemoryStore(), provider, { packSize: 128 * 1024, pageDeltaDepth: 3 });
    expect(repo.config.format).toBe(3);
    expect(repo.config.pageDeltas).toEqual({ depth: 3 });
    // Pages 0–15 change every day; 16–31 every other day; the rest never.
    const history = await days(repo, 48, 7, (d, k) => k < 16 || (k < 32 && d % 2 === 0), (d) => (d % 2 === 0 ? 2 : 0));
    const changed = (d: number) => 16 + (d % 2 === 0 ? 16 : 0);
    expect(history[0]!.deltaPages).toBe(0);
    for (const d of [1, 2, 3]) expect(history[d]!.deltaPages).toBe(changed(d));
    // Day 4: pages 0–15 would be a fourth delta deep, so they are stored whole again; 16–31 are two deep.
    expect(history[4]!.deltaPages).toBe(16);
    expect(history[5]!.deltaPages).toBe(16);
    for (const [d, day] of history.entries()) expect((await restored(repo, day.key)).equals(day.content), `day ${d}`).toBe(true);
  }, 120_000);

  it('no base is taken from a pack a running collection condemned: those pages are stored whole', async () => {
    const store = new MemoryStore();
    const repo = await Repository.init(store, provider, { packSize: 128 * 1024 });
    const src = fresh('src');
    await mkdir(src, { recursive: true });
    const day0 = Array.from({ length: 20 }, (_, k) => page(k + 100));
    await writeFile(join(src, 'rel'), Buffer.concat(day0));
    await backupTree(repo, source(src), { workers: 0 });
    const packs = (await collectList(store, 'data/')).map((o) => o.key.slice(o.key.lastIndexOf('/') + 1));
    // As a collection that condemned every pack and still runs (its lease is not looked at here).
    await writeCondemned(repo, 'gc-0123456789abcdef', packs);
    const day1 = Buffer.concat(day0.map((p, k) => (k % 2 ? editPage(p, 176 + (k % 7000), k) : p)));
    await writeFile(join(src, 'rel'), day1);
    const { key, manifest } = await backupTree(repo, source(src), { workers: 0 });
    expect(manifest.stats.newChunks).toBe(10);
    expect(manifest.stats.deltaPages ?? 0).toBe(0);
    expect((await restored(repo, key)).equals(day1)).toBe(true);
  }, 60_000);

  it('a re-encrypted copy holds every day of a history of deltas, restored exactly (its pages stored whole)', async () => {
    const repo = await Repository.init(new MemoryStore(), provider, { packSize: 128 * 1024, pageDeltaDepth: 4 });
    const history = await days(repo, 24, 4, (d, k) => k % 2 === d % 2 || k < 4, () => 0);
    expect(history[3]!.deltaPages).toBeGreaterThan(0);
    const copy = await Repository.init(new MemoryStore(), LocalKeyProvider.fromPassphrase('the copy'), reencryptInitOptions(repo.config));
    expect(copy.config.pageDeltas).toEqual({ depth: 4 });
    const report = await reencryptRepository(repo, copy);
    expect(report.backupsCopied).toBe(4);
    const copies = (await copy.listBackups()).sort((a, b) => (a.startedAt < b.startedAt ? -1 : 1));
    for (const [d, day] of history.entries()) expect((await restored(copy, copies[d]!.key)).equals(day.content), `day ${d}`).toBe(true);
  }, 120_000);

  it('a repository made without deltas stores the same days whole, at several times the bytes', async () => {
    const edits = (d: number, k: number) => k % 3 === d % 3;
    const whole = await days(await Repository.init(new MemoryStore(), provider, { packSize: 128 * 1024, pageDeltaDepth: 0 }), 60, 4, edits, () => 0);
    const deltas = await days(await Repository.init(new MemoryStore(), provider, { packSize: 128 * 1024 }), 60, 4, edits, () => 0);
    for (const d of [1, 2, 3]) {
      expect(whole[d]!.deltaPages).toBe(0);
      expect(deltas[d]!.deltaPages).toBe(20);
      expect(deltas[d]!.storedBytes * 3).toBeLessThan(whole[d]!.storedBytes);
    }
  }, 120_000);
});
