/**
 * Pages stored as deltas against their previous versions, read back: a
 * restore of a backup whose pages end long chains of deltas (some pages
 * stored whole again midway) is byte-identical, on worker threads and
 * inline, fresh or over an older restore (--delta); a damaged base or delta
 * fails the restore naming the pack and the file; garbage collection keeps
 * every base a live delta needs and frees what only expired backups held.
 *
 * The repositories are written here by hand (packs through the pack writer,
 * a manifest per version) so that the reading side is tested on its own.
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backupFiles, checkRepository, collectGarbage, CorruptObjectError, decodeIndex, expire, LocalKeyProvider, MemoryStore, mirrorBackups, repairRepository, Repository, restoreBackup, type BackupManifest } from '@coffer/engine';
import { packKey } from '../dist/format/keys-layout.js';
// Internals, not part of the package's public surface.
import { PackWriter, type SealedBlob } from '../dist/content/pack-writer.js';
import { sealInGroups } from '../dist/content/sealed-groups.js';
import { ChunkIndex } from '../dist/repository/chunk-index.js';
import { setChunkIdBytes } from '../dist/format/manifest.js';
import { scratch } from '../../../test/support/tree.js';
import { editPage as edit, heapPage as page, PAGE } from '../../../test/support/pages.js';

const provider = LocalKeyProvider.fromPassphrase('page delta test');
let work: { dir: string; cleanup: () => Promise<void> };
let n = 0;
const fresh = (name: string) => join(work.dir, `${name}-${n++}`);

beforeAll(async () => {
  work = await scratch('coffer-pdelta-');
});
afterAll(async () => work.cleanup());

interface Version {
  pages: Buffer[];
  /** Per page: stored whole in this version (rather than as a delta against the previous one). */
  whole: boolean[];
}

/** Writes a version's new pages (whole in groups, or as deltas in delta groups) and a manifest naming them. */
async function writeVersion(repo: Repository, template: BackupManifest, v: Version, prev: Version | undefined, i: number): Promise<{ key: string; deltas: number }> {
  const codec = repo.objects.codec;
  const writer = new PackWriter(repo, new ChunkIndex(), { pages: true });
  const ids = v.pages.map((p) => codec.id(p));
  const known = new Set(prev ? prev.pages.map((p) => codec.id(p).toString('hex')) : []);
  const wholeIds: Buffer[] = [];
  const wholePages: Buffer[] = [];
  const members: { id: Buffer; base: Buffer; rawLength: number; frame: Buffer }[] = [];
  const seen = new Set<string>();
  v.pages.forEach((p, k) => {
    const hex = ids[k]!.toString('hex');
    if (known.has(hex) || seen.has(hex)) return;
    seen.add(hex);
    const frame = prev && !v.whole[k] ? codec.deltaOf(p, Buffer.from(prev.pages[k]!)) : undefined;
    if (frame) members.push({ id: ids[k]!, base: codec.id(prev!.pages[k]!), rawLength: p.length, frame });
    else {
      wholeIds.push(ids[k]!);
      wholePages.push(p);
    }
  });
  codec.startBatch();
  const blobs: SealedBlob[] = wholeIds.length > 0 ? sealInGroups(codec, wholeIds, wholePages, 128 * 1024) : [];
  for (let at = 0; at < members.length; at += 7) {
    const group = members.slice(at, at + 7);
    blobs.push({ blob: codec.encodeDeltaGroup(group), chunks: group.map((m) => ({ id: m.id, rawLength: m.rawLength, base: m.base })) });
  }
  await writer.add(blobs);
  await writer.finish();
  const file = template.entries.find((e) => e.path === 'rel')!;
  const entry = { ...file, size: v.pages.length * PAGE, chunking: 'fixed' as const };
  setChunkIdBytes(entry, Buffer.concat(ids));
  const startedAt = new Date(Date.parse(template.startedAt) + (i + 1) * 60_000);
  const manifest: BackupManifest = {
    ...template,
    label: `${startedAt.toISOString().replace(/[-:]/g, '').replace('.', '_')}`,
    startedAt: startedAt.toISOString(),
    finishedAt: startedAt.toISOString(),
    entries: template.entries.map((e) => (e.path === 'rel' ? entry : e)),
  };
  return { key: await repo.writeManifest(manifest), deltas: members.length };
}

/** A repository holding `versions` as backups, each page a delta against the one before unless marked whole. */
async function repositoryOf(versions: Version[]): Promise<{ repo: Repository; store: MemoryStore; keys: string[]; deltas: number }> {
  const src = fresh('src');
  await mkdir(src, { recursive: true });
  await writeFile(join(src, 'rel'), Buffer.alloc(0));
  const store = new MemoryStore();
  const repo = await Repository.init(store, provider, { packSize: 96 * 1024 });
  const { manifest: template } = await backupFiles(repo, src);
  const keys: string[] = [];
  let deltas = 0;
  for (const [i, v] of versions.entries()) {
    const w = await writeVersion(repo, template, v, versions[i - 1], i);
    keys.push(w.key);
    deltas += w.deltas;
  }
  return { repo, store, keys, deltas };
}

/** Versions of a relation of `pages` pages: each day edits some pages, and some edited pages are stored whole again. */
function history(pages: number, days: number, edits: (day: number, k: number) => boolean, restart: (day: number, k: number) => boolean): Version[] {
  const out: Version[] = [{ pages: Array.from({ length: pages }, (_, k) => page(k + 1)), whole: Array(pages).fill(true) }];
  for (let d = 1; d < days; d++) {
    const prev = out[d - 1]!;
    out.push({
      pages: prev.pages.map((p, k) => (edits(d, k) ? edit(p, (d * 977 + k * 131) % PAGE, d * 1000 + k) : p)),
      whole: prev.pages.map((_, k) => restart(d, k)),
    });
  }
  return out;
}

/** Deltas read ahead and applied in memory (the default), or phase by phase against bases read back from the target. */
type Apply = 'ahead' | 'phases';

async function restoredFile(repo: Repository, key: string, options: { workers?: number; delta?: boolean; out?: string; apply?: Apply } = {}): Promise<Buffer> {
  const out = options.out ?? fresh('out');
  await restoreBackup(repo, key, out, {
    ...(options.workers !== undefined ? { workers: options.workers } : {}),
    ...(options.delta ? { delta: true } : {}),
    ...(options.apply === 'phases' ? { deltaPreloadBytes: 0 } : {}),
  });
  return readFile(join(out, 'rel'));
}

describe('page deltas, read back', () => {
  it('every version of random histories restores byte-identically, chains of deltas and pages stored whole again alike', async () => {
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: 12 }), fc.integer({ min: 2, max: 7 }), fc.integer({ min: 1, max: 2 ** 30 }), fc.integer({ min: 0, max: 1 }), fc.constantFrom<Apply>('ahead', 'phases'), async (pages, days, seed, workers, apply) => {
        const pick = (d: number, k: number, salt: number) => ((seed ^ (d * 7919 + k * 104729 + salt)) >>> 0) % 3 === 0;
        const versions = history(pages, days, (d, k) => pick(d, k, 1) || k === 0, (d, k) => pick(d, k, 2) && pick(d, k, 3));
        const { repo, keys } = await repositoryOf(versions);
        for (const [i, v] of versions.entries()) expect((await restoredFile(repo, keys[i]!, { workers, apply })).equals(Buffer.concat(v.pages))).toBe(true);
      }),
      { numRuns: 12 },
    );
  }, 300_000);

  it('a chain of seven deltas on every page restores on worker threads and inline, and over an older restore, read ahead or phase by phase', async () => {
    const versions = history(48, 8, () => true, () => false);
    const { repo, keys, deltas } = await repositoryOf(versions);
    expect(deltas).toBe(48 * 7);
    const last = Buffer.concat(versions[7]!.pages);
    for (const apply of ['ahead', 'phases'] as const) {
      expect((await restoredFile(repo, keys[7]!, { workers: 2, apply })).equals(last)).toBe(true);
      expect((await restoredFile(repo, keys[7]!, { workers: 0, apply })).equals(last)).toBe(true);
      const out = fresh('over');
      expect((await restoredFile(repo, keys[2]!, { out, apply })).equals(Buffer.concat(versions[2]!.pages))).toBe(true);
      expect((await restoredFile(repo, keys[7]!, { out, delta: true, apply })).equals(last)).toBe(true);
    }
  }, 120_000);

  it('read ahead, each place is written once; phase by phase, once per step of its chain', async () => {
    const versions = history(48, 4, () => true, () => false);
    const { repo, keys } = await repositoryOf(versions);
    const size = 48 * PAGE;
    for (const workers of [0, 2]) {
      const ahead = await restoreBackup(repo, keys[3]!, fresh('ahead'), { workers });
      const phased = await restoreBackup(repo, keys[3]!, fresh('phased'), { workers, deltaPreloadBytes: 0 });
      expect(ahead.bytesWritten).toBe(size);
      expect(phased.bytesWritten).toBe(4 * size);
    }
  }, 120_000);

  it('a damaged base, or a damaged delta, fails the restore naming the pack and the file', async () => {
    for (const damaged of ['base', 'delta'] as const) {
      const versions = history(20, 3, () => true, () => false);
      const { repo, store, keys } = await repositoryOf(versions);
      // The first version's pages are stored whole; the last version's are deltas against the second's.
      const victim = await packHolding(repo, damaged === 'base' ? versions[0]!.pages[5]! : versions[2]!.pages[5]!);
      const bytes = Buffer.from(await store.get(victim));
      bytes[40] = bytes[40]! ^ 0xff;
      await store.delete(victim);
      await store.put(victim, bytes);
      for (const deltaPreloadBytes of [undefined, 0]) {
        const err = await restoreBackup(repo, keys[2]!, fresh('broken'), { workers: 0, ...(deltaPreloadBytes !== undefined ? { deltaPreloadBytes } : {}) }).catch((e: unknown) => e);
        expect(err).toBeInstanceOf(CorruptObjectError);
        expect((err as CorruptObjectError).message).toContain(victim);
        expect((err as CorruptObjectError).message).toContain('rel');
      }
    }
  }, 120_000);

  it('garbage collection keeps the bases of live deltas, frees what only expired backups held, and check finds nothing amiss', async () => {
    const versions = history(30, 5, (d, k) => k % 2 === 0 || d === 1, (d, k) => d === 3 && k % 3 === 0);
    const { repo, keys } = await repositoryOf(versions);
    // The versions are dated a minute apart from now on: "now" for the expiry is after the last.
    expect((await expire(repo, { minCount: 1 }, { now: new Date(Date.now() + 3_600_000) })).removedBackups).toBe(5);
    const gc = await collectGarbage(repo, { repackDeadShare: 0.01 });
    // Packs holding dead versions go, and those holding live deltas beside dead ones are repacked (the deltas keep their bases).
    expect(gc.deletedPacks).toBeGreaterThan(0);
    expect(gc.repackedPacks).toBeGreaterThan(0);
    expect((await restoredFile(repo, keys[4]!)).equals(Buffer.concat(versions[4]!.pages))).toBe(true);
    const check = await checkRepository(repo, { readData: true });
    expect(check.problems.map((p) => p.message)).toEqual([]);
    // Once every backup is gone, nothing is kept for the chains' sake.
    const again = await collectGarbage(repo);
    expect(again.deletedPacks).toBe(0);
  }, 120_000);
});

describe('page deltas, copied', () => {
  it('a mirror of the last backup alone takes the bases of its deltas along, and restores it exactly', async () => {
    const versions = history(20, 4, (d, k) => k % 3 !== 0 || d === 2, () => false);
    const { repo, keys } = await repositoryOf(versions);
    const cold = new MemoryStore();
    await mirrorBackups(repo, cold, [keys[3]!]);
    const copy = await Repository.open(cold, provider);
    expect((await copy.listBackups()).map((b) => b.key)).toEqual([keys[3]]);
    expect((await restoredFile(copy, keys[3]!)).equals(Buffer.concat(versions[3]!.pages))).toBe(true);
    expect((await checkRepository(copy, {})).problems).toEqual([]);
  }, 60_000);
});

describe('page deltas, checked', () => {
  it('check reports a base that no index lists, when a backup references a delta taken against it', async () => {
    const versions = history(12, 3, () => true, () => false);
    const { repo, store } = await repositoryOf(versions);
    expect((await checkRepository(repo, {})).problems).toEqual([]);
    // The first version goes (its backup, then the index object listing its pages): its pages are the bases of the second's deltas.
    await expire(repo, { minCount: 2 }, { now: new Date(Date.now() + 3_600_000) });
    const first = repo.objects.codec.id(versions[0]!.pages[0]!);
    for (const key of await repo.listIndexKeys()) {
      if (decodeIndex(await repo.openIndexObject(key)).some((p) => p.entries.some((e) => e.id.equals(first)))) await store.delete(key);
    }
    const problems = (await checkRepository(repo, {})).problems.map((p) => p.message);
    expect(problems.filter((m) => m.includes('the base of a page delta'))).toHaveLength(12);
    expect(problems.some((m) => m.includes(first.toString('hex')))).toBe(true);
  }, 60_000);

  it('repair calls a backup incomplete when a pack holding the bases of its deltas is lost', async () => {
    const versions = history(12, 3, (d, k) => k < 6, () => false);
    const { repo, store, keys } = await repositoryOf(versions);
    // The first version's first group holds pages 0–11 whole: the bases of every later delta.
    await store.delete(await packHolding(repo, versions[0]!.pages[0]!));
    const report = await repairRepository(repo);
    expect(report.incomplete.map((b) => b.key).sort()).toEqual([...keys].sort());
    expect(report.incomplete.find((b) => b.key === keys[2])!.missingChunks).toBe(12);
  }, 60_000);
});

/** The pack key whose index entry lists the chunk of `p`. */
async function packHolding(repo: Repository, p: Buffer): Promise<string> {
  const id = repo.objects.codec.id(p);
  const index = await repo.loadIndex({ pages: true });
  const at = index.get(id);
  if (!at) throw new Error('not indexed');
  return packKey(at.pack);
}
