/**
 * `check` within a memory setting: an index larger than the id table is
 * checked in several passes, each over one range of ids, and must find
 * exactly what one pass finds — on a healthy repository and on one with lost
 * index objects (chunks referenced but listed by no index) and lost packs.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backupFiles, checkRepository, collectList, LocalKeyProvider, MemoryStore, packKey, Repository, walPush, type CheckReport, type ObjectStore } from '@coffer/engine';
import { ForwardingStore } from '../../../test/support/forwarding-store.js';
import { scratch } from '../../../test/support/tree.js';
import { fakeCluster, segment } from '../../../test/support/wal.js';

const provider = LocalKeyProvider.fromPassphrase('check memory test');
const small = { chunker: { minSize: 256, avgSize: 1024, maxSize: 4096 }, packSize: 64 * 1024 };
const SEG = 1 << 20;
const SYS = 7_300_000_000_000_000_002n;

let work: { dir: string; cleanup: () => Promise<void> };
let store: MemoryStore;
let repo: Repository;

beforeAll(async () => {
  work = await scratch('coffer-check-memory-');
  const src = join(work.dir, 'src');
  await mkdir(src, { recursive: true });
  store = new MemoryStore();
  repo = await Repository.init(store, provider, small);
  // About 4,000 chunks over three backups, each with data of its own, and WAL records beside them.
  for (let i = 0; i < 3; i++) {
    await writeFile(join(src, `f${i}.bin`), randomBytes(1_400_000));
    await backupFiles(repo, src);
  }
  const pgdata = await fakeCluster(join(work.dir, 'pgdata'), SYS);
  for (let n = 1; n <= 2; n++) {
    const name = `00000001000000000000000${n}`;
    await writeFile(join(pgdata, 'pg_wal', name), segment(SYS, n, SEG));
    await walPush(repo, join(pgdata, 'pg_wal', name));
  }
});
afterAll(async () => work.cleanup());

/**
 * What a report found, order aside. References to unindexed chunks are
 * reported one by one up to a cap, the rest counted: which ones come first
 * depends on the passes, so they are compared by number.
 */
function findings(r: CheckReport) {
  const key = (p: unknown) => (p as { key?: string }).key ?? '';
  const oneByOne = r.problems.filter((p) => key(p).startsWith('chunk '));
  const counted = r.problems.filter((p) => key(p) === 'chunks').map((p) => Number(/^missing object chunks: (\d+) more/.exec(p.message)?.[1]));
  expect(oneByOne.length).toBeLessThanOrEqual(1000);
  return {
    ok: r.ok,
    chunksReferenced: r.chunksReferenced,
    chunksVerified: r.chunksVerified,
    unindexedPacks: r.unindexedPacks,
    missingReferences: oneByOne.length + counted.reduce((a, b) => a + b, 0),
    problems: r.problems
      .filter((p) => !key(p).startsWith('chunk'))
      .map((p) => `${p.code} ${key(p)} ${p.message}`)
      .sort(),
  };
}

/** `inner`, but its listing says index objects weigh `factor` times less: check's first plan of ranges is too small. */
class Understated extends ForwardingStore {
  constructor(
    inner: ObjectStore,
    private readonly factor: number,
  ) {
    super(inner);
  }
  override async *list(prefix: string) {
    for await (const o of this.inner.list(prefix)) yield o.key.startsWith('index/') ? { ...o, size: Math.max(1, Math.floor(o.size / this.factor)) } : o;
  }
}

async function withRemoved<T>(keys: readonly string[], run: () => Promise<T>): Promise<T> {
  const saved = await Promise.all(keys.map(async (k) => [k, await store.get(k)] as const));
  for (const k of keys) await store.delete(k);
  try {
    return await run();
  } finally {
    for (const [k, bytes] of saved) await store.put(k, bytes);
  }
}

describe('check within a memory setting', () => {
  it('finds in several passes exactly what it finds in one, healthy or damaged', async () => {
    const one = await checkRepository(repo, { readData: true });
    expect(one.passes).toBe(1);
    expect(one.ok).toBe(true);
    expect(one.chunksReferenced).toBeGreaterThan(3000);
    expect(one.walFiles).toBe(2);

    const tiny = await checkRepository(repo, { readData: true, memoryBytes: 16 * 1024 });
    expect(tiny.passes).toBeGreaterThan(10);
    expect(findings(tiny)).toEqual(findings(one));

    // Lost: an index object (its chunks are now referenced but listed by no index) and a pack another one lists.
    const indexKeys = await repo.listIndexKeys();
    const lostIndex = indexKeys[1]!;
    const packs = (await collectList(store, 'data/')).map((o) => o.key);
    const listedElsewhere = (await repo.readIndexObject(indexKeys[0]!)).map((p) => packKey(p.sha)).filter((k) => packs.includes(k));
    expect(listedElsewhere.length).toBeGreaterThan(0);
    await withRemoved([lostIndex, listedElsewhere[0]!], async () => {
      const damagedOne = await checkRepository(repo);
      expect(damagedOne.ok).toBe(false);
      expect(findings(damagedOne).missingReferences).toBeGreaterThan(1000);
      expect(damagedOne.problems.some((p) => (p as { key?: string }).key === listedElsewhere[0])).toBe(true);
      expect(findings(await checkRepository(repo, { memoryBytes: 16 * 1024 }))).toEqual(findings(damagedOne));
    });
    expect((await checkRepository(repo, { memoryBytes: 16 * 1024 })).ok).toBe(true);
  });

  it('any memory setting, and a first plan that is far off, give the same findings', async () => {
    const expected = findings(await checkRepository(repo));
    // Told the truth, a third of it (several ranges planned, each too full), or next to nothing (one range for all).
    const readers = [repo, await Repository.open(new Understated(store, 3), provider), await Repository.open(new Understated(store, 1e9), provider)];
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 8 * 1024, max: 512 * 1024 }), fc.constantFrom(0, 1, 2), async (memoryBytes, which) => {
        const r = await checkRepository(readers[which]!, { memoryBytes });
        expect(findings(r)).toEqual(expected);
        expect(r.passes).toBeGreaterThanOrEqual(1);
      }),
      { numRuns: 24 },
    );
  });
});
