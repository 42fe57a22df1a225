/**
 * The re-encrypting copy: every backup, WAL file (and streamed prefix),
 * stanza and keep mark arrives under new keys and new chunk ids; the copy
 * restores byte for byte, checks clean, cannot be opened with the old keys,
 * shares no object name and no chunk id with the source; a run cut short
 * resumes; a damaged source object is named and nothing of its backup is
 * written; the copy's own keys must be new.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  backupFiles,
  checkRepository,
  chunkIdsOf,
  collectList,
  CorruptObjectError,
  fetchStreamedSegment,
  fetchWalBytes,
  InvalidArgumentError,
  LocalKeyProvider,
  MemoryStore,
  mirror,
  readKeepMarks,
  reencryptInitOptions,
  reencryptRepository,
  Repository,
  restoreBackup,
  setKeepMark,
  walPush,
  WalStreamArchiver,
  type ObjectStore,
} from '@coffer/engine';
import { scratch, snapshot } from '../../../test/support/tree.js';
import { fakeCluster, segment, segmentName } from '../../../test/support/wal.js';

const SYS = 7_300_000_000_000_000_901n;
const SEG = 1024 * 1024;
const scope = { stanza: 'main', systemIdentifier: SYS.toString() };

let work: { dir: string; cleanup: () => Promise<void> };
let oldKey: LocalKeyProvider;
let newKey: LocalKeyProvider;
beforeAll(async () => {
  work = await scratch('coffer-reencrypt-');
  for (const name of ['old.key', 'new.key']) await writeFile(join(work.dir, name), randomBytes(32).toString('hex'));
  oldKey = await LocalKeyProvider.fromKeyFile(join(work.dir, 'old.key'));
  newKey = await LocalKeyProvider.fromKeyFile(join(work.dir, 'new.key'));
});
afterAll(async () => work.cleanup());

const small = { chunker: { minSize: 256, avgSize: 1024, maxSize: 4096 }, packSize: 64 * 1024 };

/** Every chunk id the repository's manifests name. */
async function manifestIds(repo: Repository): Promise<Set<string>> {
  const out = new Set<string>();
  for (const b of await repo.listBackups()) {
    for (const e of (await repo.readManifest(b.key)).entries) {
      const ids = chunkIdsOf(e);
      for (let at = 0; at < ids.length; at += 32) out.add(ids.toString('hex', at, at + 32));
    }
  }
  return out;
}

const names = async (store: ObjectStore, prefix: string) => new Set((await collectList(store, prefix)).map((o) => o.key));

/** A store that refuses the `n`th manifest write, as a run killed there would leave it. */
function failingAt(inner: MemoryStore, n: number): ObjectStore {
  let manifests = 0;
  return new Proxy(inner, {
    get(target, prop, receiver) {
      if (prop === 'put') {
        return async (key: string, bytes: Uint8Array) => {
          if (key.startsWith('backups/') && ++manifests === n) throw new Error('killed before the manifest');
          return target.put(key, bytes);
        };
      }
      const v = Reflect.get(target, prop, receiver) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
}

describe('re-encrypting copy', () => {
  it('copies backups, WAL and marks under new keys; restores, checks clean; resumes; shares nothing with the source', async () => {
    const sourceStore = new MemoryStore();
    const repo = await Repository.init(sourceStore, oldKey, small);
    const src = join(work.dir, 'src');
    await mkdir(src);
    await writeFile(join(src, 'shared.bin'), randomBytes(60_000));
    const keys: string[] = [];
    const snaps: Awaited<ReturnType<typeof snapshot>>[] = [];
    for (let i = 0; i < 3; i++) {
      await writeFile(join(src, `day-${i}.bin`), randomBytes(40_000));
      await writeFile(join(src, 'zeros.bin'), Buffer.alloc(30_000 + i));
      keys.push((await backupFiles(repo, src, { tags: [`day-${i}`] })).key);
      snaps.push(await snapshot(src));
    }
    await setKeepMark(repo, keys[0]!, true, 'audit hold');

    // WAL: two whole segments, and a third only streamed so far.
    const pgdata = await fakeCluster(join(work.dir, 'pg'), SYS);
    const segs = [segment(SYS, 1, SEG), segment(SYS, 2, SEG), segment(SYS, 3, SEG)];
    for (const i of [0, 1]) {
      await writeFile(join(pgdata, 'pg_wal', segmentName(i + 1)), segs[i]!);
      await walPush(repo, join(pgdata, 'pg_wal', segmentName(i + 1)));
    }
    const archiver = new WalStreamArchiver(repo, { systemIdentifier: scope.systemIdentifier });
    const first = await archiver.prefix(segmentName(3), segs[2]!.subarray(0, 200_000));
    await archiver.prefix(segmentName(3), segs[2]!.subarray(0, 500_000), first);
    await archiver.close();

    // Killed before the second manifest: the first backup and all WAL are in, the rest is not.
    const destStore = new MemoryStore();
    const copy = await Repository.init(destStore, newKey, reencryptInitOptions(repo.config));
    const killed = await Repository.open(failingAt(destStore, 2), newKey);
    await expect(reencryptRepository(repo, killed)).rejects.toThrow(/killed before the manifest/);
    expect((await copy.listBackups()).length).toBe(1);

    const report = await reencryptRepository(repo, copy);
    expect(report.backupsCopied).toBe(2);
    expect(report.backups.map((b) => b.label)).toEqual((await repo.listBackups()).map((b) => b.label).sort());
    expect(report.walPresent).toBe(3);
    expect(report.walFiles).toBe(0);

    // The copy holds the same backups, parents mapped to the copy's manifests, tags and keep mark carried.
    const copies = (await copy.listBackups()).sort((a, b) => (a.startedAt < b.startedAt ? -1 : 1));
    expect(copies.map((b) => b.tags)).toEqual([['day-0'], ['day-1'], ['day-2']]);
    expect(copies[0]!.parent).toBeUndefined();
    expect(copies[1]!.parent).toBe(copies[0]!.key);
    expect(copies[2]!.parent).toBe(copies[1]!.key);
    expect([...(await readKeepMarks(copy)).entries()].map(([k, m]) => [k, m.keep, m.note])).toEqual([[copies[0]!.key, true, 'audit hold']]);
    for (const [i, b] of copies.entries()) {
      const out = join(work.dir, `out-${i}`);
      await restoreBackup(copy, b.key, out);
      expect(await snapshot(out)).toEqual(snaps[i]);
    }
    for (const [i, s] of segs.slice(0, 2).entries()) expect((await fetchWalBytes(copy, scope, segmentName(i + 1)))!.equals(s)).toBe(true);
    const streamed = (await fetchStreamedSegment(copy, scope, segmentName(3)))!;
    expect(streamed.subarray(0, 500_000).equals(segs[2]!.subarray(0, 500_000))).toBe(true);
    expect(streamed.length).toBe(SEG);
    const check = await checkRepository(copy, { readData: true });
    expect(check.problems.map((p) => p.message)).toEqual([]);

    // Nothing shared: no pack or manifest name, no chunk id; the old key opens nothing.
    for (const prefix of ['data/', 'backups/']) {
      const theirs = await names(sourceStore, prefix);
      expect([...(await names(destStore, prefix))].filter((k) => theirs.has(k))).toEqual([]);
    }
    const oldIds = await manifestIds(repo);
    const newIds = await manifestIds(copy);
    expect(newIds.size).toBe(oldIds.size);
    expect([...newIds].filter((id) => oldIds.has(id))).toEqual([]);
    await expect(Repository.open(destStore, oldKey)).rejects.toMatchObject({ code: 'COFFER_WRONG_KEY' });

    // Once more: nothing left to do.
    const again = await reencryptRepository(repo, copy);
    expect([again.backupsCopied, again.chunksWritten, again.walFiles, again.keepMarks]).toEqual([0, 0, 0, 0]);
  });

  it('names a damaged source object and writes nothing of its backup', async () => {
    const sourceStore = new MemoryStore();
    const repo = await Repository.init(sourceStore, oldKey, small);
    const src = join(work.dir, 'damaged');
    await mkdir(src);
    await writeFile(join(src, 'a.bin'), randomBytes(50_000));
    await backupFiles(repo, src);
    const pack = (await collectList(sourceStore, 'data/'))[0]!.key;
    const bytes = Buffer.from(await sourceStore.get(pack));
    bytes[100]! ^= 0xff;
    await sourceStore.delete(pack);
    await sourceStore.put(pack, bytes);

    const destStore = new MemoryStore();
    const copy = await Repository.init(destStore, newKey, reencryptInitOptions(repo.config));
    const failure = await reencryptRepository(repo, copy).catch((e: unknown) => e);
    expect(failure).toBeInstanceOf(CorruptObjectError);
    expect((failure as CorruptObjectError).key).toBe(pack);
    expect((failure as CorruptObjectError).affectedFiles).toEqual(['a.bin']);
    expect(await names(destStore, 'backups/')).toEqual(new Set());
  });

  it('refuses a destination with the same keys: the repository itself, or a plain mirror of it', async () => {
    const sourceStore = new MemoryStore();
    const repo = await Repository.init(sourceStore, oldKey, small);
    await expect(reencryptRepository(repo, repo)).rejects.toBeInstanceOf(InvalidArgumentError);
    const mirrored = new MemoryStore();
    await mirror(sourceStore, mirrored);
    await expect(reencryptRepository(repo, await Repository.open(mirrored, oldKey))).rejects.toThrow(/same repository/);
  });

  it('round trip: any tree restores byte for byte from the copy (property)', async () => {
    let run = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(fc.tuple(fc.uint8Array({ maxLength: 20_000 }), fc.boolean()), { minLength: 1, maxLength: 5 }), async (files) => {
        const dir = join(work.dir, `prop-${run++}`);
        await mkdir(dir);
        const repo = await Repository.init(new MemoryStore(), oldKey, small);
        for (const [i, [content, twice]] of files.entries()) {
          await writeFile(join(dir, `f${i}`), content);
          if (twice) await writeFile(join(dir, `g${i}`), content);
        }
        const want = await snapshot(dir);
        await backupFiles(repo, dir);
        const copy = await Repository.init(new MemoryStore(), newKey, reencryptInitOptions(repo.config));
        await reencryptRepository(repo, copy);
        const out = `${dir}-out`;
        await restoreBackup(copy, (await copy.listBackups())[0]!.key, out);
        expect(await snapshot(out)).toEqual(want);
        await rm(dir, { recursive: true });
        await rm(out, { recursive: true });
      }),
      { numRuns: 20 },
    );
  });
});
