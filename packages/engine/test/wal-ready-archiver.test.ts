/**
 * The archiver behind archive_command (`coffer wal-archiver`): it archives
 * each file PostgreSQL marks ready, in whatever order and number the marks
 * appear, on worker threads or its own; every file it reports durable reads
 * back byte for byte, under the identity it was read with; it never marks a
 * file done (PostgreSQL's job), tries a failed file again, and stops when
 * idle, aborted, or when its pg_wal goes away.
 */
import { randomBytes } from 'node:crypto';
import { readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { archiveReadyWal, fetchWalBytes, FileStore, LocalKeyProvider, Repository, type ArchivedReady, type ObjectStore, type PutOutcome } from '@coffer/engine';
import { WalSealPool } from '../dist/postgres/wal-seal-pool.js';
import { sealWal } from '../dist/postgres/wal-seal.js';
import { ForwardingStore } from '../../../test/support/forwarding-store.js';
import { scratchWithKey } from '../../../test/support/keys.js';
import { fakeCluster, segment, segmentName } from '../../../test/support/wal.js';

const SYS = 7_300_000_000_000_000_555n;
const SEG = 1024 * 1024;
const scope = { stanza: 'main', systemIdentifier: SYS.toString() };

let work: { dir: string; cleanup: () => Promise<void> };
let keys: LocalKeyProvider;
let n = 0;
beforeAll(async () => {
  ({ work, keys } = await scratchWithKey('coffer-wal-archiver-'));
});
afterAll(async () => {
  await work.cleanup();
});

/** A fresh data directory and repository (over `wrap` of its store). */
async function setup(wrap: (s: ObjectStore) => ObjectStore = (s) => s): Promise<{ pgdata: string; walDir: string; repo: Repository; store: ObjectStore }> {
  const at = join(work.dir, `case-${n++}`);
  const pgdata = await fakeCluster(join(at, 'data'), SYS);
  const store = wrap(new FileStore(join(at, 'repo')));
  const repo = await Repository.init(store, [keys]);
  return { pgdata, walDir: join(pgdata, 'pg_wal'), repo, store };
}

/** Writes segment `i` and marks it ready, as PostgreSQL does (file first, then the mark). */
async function markReady(walDir: string, i: number): Promise<Buffer> {
  const bytes = segment(SYS, i, SEG);
  // Each segment its own bytes past the header, and a tail of zeroes, as after a switch.
  randomBytes(SEG / 2).copy(bytes, 8192);
  await writeFile(join(walDir, segmentName(i)), bytes);
  await writeFile(join(walDir, 'archive_status', `${segmentName(i)}.ready`), '');
  return bytes;
}

async function until(what: () => boolean, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (!what()) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 5));
  }
}

describe('archiveReadyWal', () => {
  it('archives files in whatever order and number they are marked ready; each reported file reads back exact, under the identity it was read with; no file is marked done', async () => {
    await fc.assert(
      fc.asyncProperty(fc.shuffledSubarray([1, 2, 3, 4, 5, 6], { minLength: 1 }), fc.integer({ min: 1, max: 3 }), fc.constantFrom(0, 2), async (order, parallel, workers) => {
        const { walDir, repo } = await setup();
        const stop = new AbortController();
        const reported = new Map<string, ArchivedReady>();
        const run = archiveReadyWal(repo, walDir, { parallel, workers, idleExitMs: 0, pollMs: 50, signal: stop.signal, onDurable: (f) => void reported.set(f.name, f) });
        const written = new Map<string, Buffer>();
        for (const i of order) {
          written.set(segmentName(i), await markReady(walDir, i));
          if (i % 2) await new Promise((r) => setTimeout(r, 10));
        }
        await until(() => reported.size === order.length);
        stop.abort();
        const result = await run;
        expect(result).toMatchObject({ archived: order.length, failures: 0, reason: 'aborted' });
        for (const [name, bytes] of written) {
          const f = reported.get(name)!;
          expect(f.outcome).toBe('archived');
          expect(f.systemIdentifier).toBe(SYS.toString());
          expect((await fetchWalBytes(repo, scope, name))!.equals(bytes)).toBe(true);
          const s = await stat(join(walDir, name), { bigint: true });
          expect(f.identity).toEqual({ dev: s.dev.toString(), ino: s.ino.toString(), size: SEG, mtimeNs: s.mtimeNs.toString(), ctimeNs: s.ctimeNs.toString() });
          await expect(stat(join(walDir, 'archive_status', `${name}.done`))).rejects.toThrow();
        }
      }),
      { numRuns: 8 },
    );
  }, 120_000);

  it('seals on a worker what it would seal on its own thread; says when a worker has started', async () => {
    const { walDir, repo } = await setup();
    const bytes = await markReady(walDir, 7);
    const pool = new WalSealPool(repo, 1);
    try {
      expect(pool.warm).toBe(false);
      await until(() => pool.warm);
      const onWorker = await pool.seal(join(walDir, segmentName(7)));
      const here = sealWal(repo.objects.codec, bytes);
      expect(onWorker.sealed.sha256).toBe(here.sha256);
      expect(onWorker.sealed.ids.map((id) => id.toString('hex'))).toEqual(here.ids.map((id) => id.toString('hex')));
      expect(onWorker.sealed.sealed.map((b) => b.chunks.map((c) => [c.id.toString('hex'), c.rawLength]))).toEqual(here.sealed.map((b) => b.chunks.map((c) => [c.id.toString('hex'), c.rawLength])));
      expect(onWorker.data.equals(bytes.subarray(0, 8192))).toBe(true);
    } finally {
      await pool.close();
    }
  });

  it('a file the store refuses is reported failed and tried again until it is archived; nothing is reported durable before it is', async () => {
    let refuse = true;
    class Refusing extends ForwardingStore {
      override put(key: string, data: Uint8Array): Promise<PutOutcome> {
        if (refuse && key.startsWith('wal/')) return Promise.reject(Object.assign(new Error('store unavailable'), { code: 'ECONNREFUSED' }));
        return super.put(key, data);
      }
    }
    const { walDir, repo } = await setup((s) => new Refusing(s));
    const failures: { name: string; retryInMs: number }[] = [];
    const reported: string[] = [];
    const stop = new AbortController();
    const run = archiveReadyWal(repo, walDir, { idleExitMs: 0, pollMs: 20, signal: stop.signal, onDurable: (f) => void reported.push(f.name), onFailure: (name, _e, retryInMs) => void failures.push({ name, retryInMs }) });
    const bytes = await markReady(walDir, 7);
    await until(() => failures.length >= 2);
    expect(reported).toEqual([]);
    expect(await fetchWalBytes(repo, scope, segmentName(7))).toBeUndefined();
    // Waits grow between tries.
    expect(failures[1]!.retryInMs).toBeGreaterThan(failures[0]!.retryInMs);
    refuse = false;
    await until(() => reported.length === 1, 30_000);
    stop.abort();
    expect((await run).archived).toBe(1);
    expect((await fetchWalBytes(repo, scope, segmentName(7)))!.equals(bytes)).toBe(true);
  }, 60_000);

  it('leaves files alone that are done already or that the caller skips, returns when idle, and when its pg_wal is gone', async () => {
    const { pgdata, walDir, repo } = await setup();
    await markReady(walDir, 1);
    await markReady(walDir, 2);
    await rename(join(walDir, 'archive_status', `${segmentName(2)}.ready`), join(walDir, 'archive_status', `${segmentName(2)}.done`));
    await markReady(walDir, 3);
    const reported: string[] = [];
    const idle = await archiveReadyWal(repo, walDir, { idleExitMs: 300, pollMs: 50, skip: (name) => name === segmentName(3), onDurable: (f) => void reported.push(f.name) });
    expect(idle).toMatchObject({ reason: 'idle', archived: 1 });
    expect(reported).toEqual([segmentName(1)]);
    expect(await fetchWalBytes(repo, scope, segmentName(2))).toBeUndefined();
    const run = archiveReadyWal(repo, walDir, { idleExitMs: 0, pollMs: 50 });
    await new Promise((r) => setTimeout(r, 200));
    await rm(pgdata, { recursive: true, force: true });
    expect((await run).reason).toBe('gone');
  }, 30_000);

  it('keeps to its window past the last call, and moves it as soon as a call is written to the call file, not at the next look', async () => {
    const { walDir, repo } = await setup();
    for (const i of [1, 2, 3, 4]) await markReady(walDir, i);
    const callFile = join(walDir, 'last-call');
    await writeFile(callFile, segmentName(1));
    const reported: string[] = [];
    const stop = new AbortController();
    const window = { ahead: 1, callFile, lastCall: () => readFile(callFile, 'utf8').catch(() => undefined) };
    // A minute between looks: only the watch can move the window in time.
    const run = archiveReadyWal(repo, walDir, { idleExitMs: 0, pollMs: 60_000, window, signal: stop.signal, onDurable: (f) => void reported.push(f.name) });
    await until(() => reported.length === 2);
    await new Promise((r) => setTimeout(r, 300));
    expect(reported.sort()).toEqual([segmentName(1), segmentName(2)]);
    await writeFile(callFile, segmentName(2));
    const called = Date.now();
    await until(() => reported.length === 3, 10_000);
    expect(reported).toContain(segmentName(3));
    expect(Date.now() - called).toBeLessThan(5_000);
    expect(reported).not.toContain(segmentName(4));
    // Stopped while it looks: it does not wait the minute out.
    const stopped = Date.now();
    stop.abort();
    expect((await run).reason).toBe('aborted');
    expect(Date.now() - stopped).toBeLessThan(5_000);
  }, 30_000);

  it('stops once the repository has a newer data key (key rotate elsewhere), not for a wrapping added; opened again, it seals with that key', async () => {
    const { walDir, repo, store } = await setup();
    expect(await repo.keyRing.rotatedSince()).toBe(false);
    await writeFile(join(work.dir, 'key2'), randomBytes(32).toString('hex'));
    const other = await LocalKeyProvider.fromKeyFile(join(work.dir, 'key2'));
    // Another process adds a wrapping: the data key is the same, nothing to do.
    await (await Repository.open(store, [keys])).keyRing.addWrapping(other);
    expect(await repo.keyRing.rotatedSince()).toBe(false);
    await markReady(walDir, 1);
    const run = archiveReadyWal(repo, walDir, { idleExitMs: 0, pollMs: 20, keyCheckMs: 50 });
    await new Promise((r) => setTimeout(r, 300));
    await (await Repository.open(store, [keys])).keyRing.rotate([keys]);
    const r = await run;
    expect(r.reason).toBe('rotated');
    expect(r.archived).toBe(1);
    const again = await Repository.open(store, [keys]);
    expect(again.keyRing.currentKeyId).toBe(repo.keyRing.currentKeyId + 1);
    expect(await again.keyRing.rotatedSince()).toBe(false);
  }, 30_000);
});
