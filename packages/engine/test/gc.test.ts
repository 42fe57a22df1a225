/**
 * Expire and garbage collection in one process, against a store the test can
 * hold still at chosen moments: what is reclaimed, and that a writer working
 * while a collection runs never ends up referencing a deleted pack — whether
 * it started before the collection condemned packs (the collection waits for
 * it and spares what it committed) or after (it stores condemned chunks
 * again, and the collection deletes the old ones).
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  backupFiles,
  checkRepository,
  collectGarbage,
  collectList,
  expire,
  Lease,
  LocalKeyProvider,
  recordVerification,
  setKeepMark,
  MemoryStore,
  type ByteRange,
  Repository,
  restoreBackup,
  RepositoryBusyError,
  type ObjectStore,
} from '@coffer/engine';
import { scratch, snapshot } from '../../../test/support/tree.js';
import { until } from '../../../test/support/until.js';
import { ForwardingStore } from '../../../test/support/forwarding-store.js';

/** A store whose operations can be held at a gate the test opens. */
class GatedStore extends ForwardingStore {
  hold: ((op: 'put' | 'list', key: string) => boolean) | undefined;
  private waiting: (() => void)[] = [];
  held = 0;
  open(): void {
    this.hold = undefined;
    for (const w of this.waiting.splice(0)) w();
  }
  private async gate(op: 'put' | 'list', key: string): Promise<void> {
    if (this.hold?.(op, key)) {
      this.held++;
      await new Promise<void>((r) => this.waiting.push(r));
    }
  }
  override async put(key: string, data: Uint8Array) {
    await this.gate('put', key);
    return this.inner.put(key, data);
  }
  override async *list(prefix: string) {
    await this.gate('list', prefix);
    yield* this.inner.list(prefix);
  }
}

let dir: string;
let cleanup: () => Promise<void>;
const provider = LocalKeyProvider.fromPassphrase('gc test');
const small = { chunker: { minSize: 256, avgSize: 1024, maxSize: 4096 }, packSize: 64 * 1024 };

beforeAll(async () => {
  ({ dir, cleanup } = await scratch('coffer-gc-'));
});
afterAll(async () => cleanup());


async function dataBytes(store: ObjectStore): Promise<number> {
  return (await collectList(store, 'data/')).reduce((n, o) => n + o.size, 0);
}

async function packKeys(store: ObjectStore): Promise<Set<string>> {
  return new Set((await collectList(store, 'data/')).map((o) => o.key));
}

/** A source directory, and a repository holding an expired backup whose `old.bin` chunks no kept backup references. */
async function withExpiredData(name: string): Promise<{ store: GatedStore; repo: Repository; src: string; old: Buffer; oldPacks: Set<string> }> {
  const src = join(dir, name);
  await mkdir(src, { recursive: true });
  const store = new GatedStore(new MemoryStore());
  const repo = await Repository.init(store, provider, small);
  const old = randomBytes(200_000);
  await writeFile(join(src, 'keep.bin'), randomBytes(50_000));
  await backupFiles(repo, src);
  // The packs of the next backup hold old.bin's chunks only.
  await writeFile(join(src, 'old.bin'), old);
  const before = await packKeys(store);
  await backupFiles(repo, src);
  const oldPacks = new Set([...(await packKeys(store))].filter((k) => !before.has(k)));
  await rm(join(src, 'old.bin'));
  await backupFiles(repo, src);
  const report = await expire(repo, { minCount: 1 });
  expect(report.removedBackups).toBe(2);
  return { store, repo, src, old, oldPacks };
}

describe('expire and gc', () => {
  it('a backup expired between the listing and the reading of its manifest is passed over, not a failure (found by the concurrency suite)', async () => {
    const src = join(dir, 'expired-meanwhile');
    await mkdir(src, { recursive: true });
    /** Deletes `victim` (as a concurrent expire would) the first time gc reads it. */
    class ExpiringStore extends ForwardingStore {
      victim: string | undefined;
      override async get(key: string, range?: ByteRange): Promise<Uint8Array> {
        if (key === this.victim) {
          this.victim = undefined;
          await this.inner.delete(key);
        }
        return this.inner.get(key, range);
      }
    }
    const store = new ExpiringStore(new MemoryStore());
    const repo = await Repository.init(store, provider, small);
    const keys: string[] = [];
    for (let i = 0; i < 3; i++) {
      await writeFile(join(src, `f${i}.bin`), randomBytes(100_000));
      keys.push((await backupFiles(repo, src)).key);
    }
    store.victim = keys[1];
    const gc = await collectGarbage(repo);
    expect(store.victim).toBeUndefined();
    expect(gc.deletedPacks).toBe(0);
    const out = join(dir, 'expired-meanwhile-out');
    await restoreBackup(repo, keys[2]!, out);
    expect(await snapshot(out)).toEqual(await snapshot(src));
  });

  it('gc frees what only expired backups held, every kept backup restores exactly, and a second gc finds nothing', async () => {
    const src = join(dir, 'reclaim');
    await mkdir(src, { recursive: true });
    const store = new MemoryStore();
    const repo = await Repository.init(store, provider, small);
    for (let i = 0; i < 4; i++) {
      await writeFile(join(src, `day${i}.bin`), randomBytes(150_000));
      if (i > 0) await rm(join(src, `day${i - 1}.bin`));
      await writeFile(join(src, 'shared.bin'), randomBytes(1)); // tiny churn beside the big files
      await backupFiles(repo, src);
    }
    await expire(repo, { minCount: 1 });
    const gc = await collectGarbage(repo, { repackDeadShare: 0.1 });
    expect(gc.deletedPacks).toBeGreaterThan(0);
    const check = await checkRepository(repo, { readData: true });
    expect(check.problems.map((p) => p.message)).toEqual([]);
    const out = join(dir, 'reclaim-out');
    await restoreBackup(repo, 'latest', out);
    expect(await snapshot(out)).toEqual(await snapshot(src));

    // What a repository holding only the kept backup takes: the collected one is within 15% of it.
    const alone = new MemoryStore();
    await backupFiles(await Repository.init(alone, provider, small), src);
    expect(await dataBytes(store)).toBeLessThanOrEqual((await dataBytes(alone)) * 1.15);
    expect(await dataBytes(store)).toBeGreaterThanOrEqual((await dataBytes(alone)) * 0.85);

    const again = await collectGarbage(repo);
    expect(again.deletedPacks).toBe(0);
    expect(again.repackedPacks).toBe(0);
  });

  it('a filter that errs often still lets dead packs go whole: the chunks it calls live are looked at again, exactly', async () => {
    const { store, repo, src, oldPacks } = await withExpiredData('second-look');
    // 64 bytes of filter for a few hundred ids: it calls about one dead chunk in ten live.
    const gc = await collectGarbage(repo, { filterBytes: 64 });
    expect(gc.falsePositiveRate).toBeGreaterThan(0.05);
    // Dead packs where the filter erred were looked at again (one where it did not is simply unreferenced).
    expect(gc.recheckedPacks).toBeGreaterThan(0);
    expect(gc.falseLiveChunks).toBeGreaterThan(0);
    expect(gc.repackedPacks).toBe(0);
    const left = await packKeys(store);
    for (const k of oldPacks) expect(left.has(k), k).toBe(false);
    const check = await checkRepository(repo, { readData: true });
    expect(check.problems.map((p) => p.message)).toEqual([]);
    const out = join(dir, 'second-look-out');
    await restoreBackup(repo, 'latest', out);
    expect(await snapshot(out)).toEqual(await snapshot(src));
  });

  it('expire keeps the newest backup that passed verification and marked ones; their records go with them', async () => {
    const src = join(dir, 'marks');
    await mkdir(src, { recursive: true });
    const store = new MemoryStore();
    const repo = await Repository.init(store, provider, small);
    const keys: string[] = [];
    for (let i = 0; i < 4; i++) {
      await writeFile(join(src, 'f.bin'), randomBytes(10_000));
      keys.push((await backupFiles(repo, src)).key);
    }
    await recordVerification(repo, { backup: keys[0]!, at: new Date().toISOString(), ok: true, checks: ['restore'] });
    await recordVerification(repo, { backup: keys[1]!, at: new Date().toISOString(), ok: false, checks: ['restore'] });
    await setKeepMark(repo, keys[2]!, true, 'audit');
    const first = await expire(repo, { minCount: 1 });
    expect(first.backups.map((b) => [b.keep, b.rules])).toEqual([
      [true, ['verified']],
      [false, ['expire']],
      [true, ['keep-mark']],
      [true, ['min-count']],
    ]);
    expect((await collectList(store, 'verified/')).length).toBe(1);
    await setKeepMark(repo, keys[2]!, false);
    const second = await expire(repo, { minCount: 1 });
    expect(second.backups.filter((b) => !b.keep).map((b) => b.key)).toEqual([keys[2]]);
    expect(await collectList(store, 'keep/')).toEqual([]);
    expect((await repo.listBackups()).map((b) => b.key)).toEqual([keys[0], keys[3]]);
  });

  it('a dry run changes nothing', async () => {
    const { store, repo, oldPacks } = await withExpiredData('dry');
    const before = await packKeys(store);
    const r = await collectGarbage(repo, { dryRun: true });
    expect(r.deletedPacks).toBeGreaterThanOrEqual(oldPacks.size);
    expect(await packKeys(store)).toEqual(before);
  });

  it('a writer that started before the condemnation and commits while gc waits keeps the packs it references', async () => {
    const { store, repo, src, old, oldPacks } = await withExpiredData('before');
    // The writer brings old.bin back: its chunks are found in the index (in the expired backup's packs).
    await writeFile(join(src, 'old.bin'), old);
    store.hold = (op, key) => op === 'put' && key.startsWith('backups/');
    const writer = backupFiles(repo, src);
    await until(() => store.held === 1, 'the writer to reach its commit');
    const gc = collectGarbage(repo, { maxWaitMs: 30_000 });
    await until(async () => (await collectList(store, 'condemned/')).length > 0, 'the condemnation record');
    store.open();
    const { key } = await writer;
    const report = await gc;
    expect(report.waitedFor.length).toBeGreaterThanOrEqual(1);
    expect(report.sparedPacks).toBeGreaterThanOrEqual(1);
    for (const k of oldPacks) expect(await store.head(k)).toBeDefined();
    const check = await checkRepository(repo, { readData: true });
    expect(check.problems.map((p) => p.message)).toEqual([]);
    const out = join(dir, 'before-out');
    await restoreBackup(repo, key, out);
    expect(await snapshot(out)).toEqual(await snapshot(src));
  });

  it('a writer that starts after the condemnation stores condemned chunks again, and gc deletes the old packs', async () => {
    const { store, repo, src, old, oldPacks } = await withExpiredData('after');
    let condemned = false;
    store.hold = (op, key) => {
      if (op === 'put' && key.startsWith('condemned/')) condemned = true;
      return op === 'list' && key === 'locks/' && condemned;
    };
    const gc = collectGarbage(repo, { maxWaitMs: 30_000 });
    await until(() => store.held === 1, 'gc to look at leases after condemning');
    const hold = store.hold;
    store.hold = undefined; // the writer's own listings pass; gc stays held
    await writeFile(join(src, 'old.bin'), old);
    const { key, manifest } = await backupFiles(repo, src);
    expect(manifest.stats.newChunks).toBeGreaterThan(0);
    store.hold = hold;
    store.open();
    const report = await gc;
    expect(report.sparedPacks).toBe(0);
    for (const k of oldPacks) expect(await store.head(k)).toBeUndefined();
    const check = await checkRepository(repo, { readData: true });
    expect(check.problems.map((p) => p.message)).toEqual([]);
    const out = join(dir, 'after-out');
    await restoreBackup(repo, key, out);
    expect(await snapshot(out)).toEqual(await snapshot(src));
    expect(await collectList(store, 'condemned/')).toEqual([]);
  });

  it('a dead writer\'s pack goes once its lease is stale; a second collection waits for the first or gives up', async () => {
    const store = new GatedStore(new MemoryStore());
    const repo = await Repository.init(store, provider, small);
    // A writer that died after writing a pack: its lease is never renewed again.
    let clock = 0;
    const dead = await Lease.acquire(repo, { purpose: 'backup', ttlMs: 200, clock: () => clock });
    clock = 10_000;
    await dead.renew(); // finds itself stopped past its time-to-live: no more renewals
    const orphan = randomBytes(1000);
    const sha = createHash('sha256').update(orphan).digest('hex');
    const orphanKey = `data/${sha.slice(0, 2)}/${sha}`;
    await store.put(orphanKey, orphan);

    store.hold = (op, key) => op === 'put' && key.startsWith('condemned/');
    const first = collectGarbage(repo, { marginMs: () => 3000, maxWaitMs: 30_000 });
    await until(() => store.held === 1, 'the first collection to condemn');
    await expect(collectGarbage(repo, { maxWaitMs: 300, marginMs: () => 100 })).rejects.toThrow(RepositoryBusyError);
    store.open();
    const report = await first;
    expect(report.waitedFor).toContain(dead.id);
    expect(report.deletedPacks).toBe(1);
    expect(await store.head(orphanKey)).toBeUndefined();
    expect((await collectList(store, 'locks/')).filter((o) => o.key.includes(dead.id))).toEqual([]);
  });
});
