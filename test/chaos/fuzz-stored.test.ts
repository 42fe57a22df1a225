/**
 * Every kind of object Coffer stores, its stored bytes mutated — bits
 * flipped, cut short, lengthened, replaced by random bytes — and read back
 * by the function that reads that kind: the answer is a typed error (or,
 * where a reader sets a damaged object aside, a result without it), never
 * an untyped error, a hang or a crash. Objects whose loss loses data
 * (config, keys, manifests, index objects, packs, WAL and stanza records)
 * must be refused.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  backupFiles,
  checkRepository,
  CofferError,
  collectList,
  ensureStanza,
  LocalKeyProvider,
  MemoryStore,
  parseWalKey,
  readKeepMarks,
  readStanza,
  readVerifications,
  readWalRecord,
  recordVerification,
  Repository,
  setKeepMark,
  walPush,
} from '@coffer/engine';
import { scratch } from '../support/tree.js';
import { fakeCluster, segment } from '../support/wal.js';
import { addFigures, sized } from './figures.js';

const provider = LocalKeyProvider.fromPassphrase('fuzz stored objects');
const SYS = 7_600_000_000_000_000_001n;
const SEG = 1 << 20;

let work: { dir: string; cleanup: () => Promise<void> };
let store: MemoryStore;
let repo: Repository;

beforeAll(async () => {
  work = await scratch('coffer-fuzz-stored-');
  const src = join(work.dir, 'src');
  await mkdir(src, { recursive: true });
  await writeFile(join(src, 'a.bin'), randomBytes(300_000));
  await writeFile(join(src, 'b.txt'), 'text '.repeat(10_000));
  store = new MemoryStore();
  repo = await Repository.init(store, provider, { chunker: { minSize: 4096, avgSize: 16384, maxSize: 65536 }, packSize: 128 * 1024 });
  const { key } = await backupFiles(repo, src);
  await ensureStanza(repo, 'main', { systemIdentifier: SYS.toString(), major: 15, walSegmentSize: SEG });
  const pgdata = await fakeCluster(join(work.dir, 'pgdata'), SYS);
  const name = '000000010000000000000001';
  await writeFile(join(pgdata, 'pg_wal', name), segment(SYS, 1, SEG));
  await walPush(repo, join(pgdata, 'pg_wal', name));
  await setKeepMark(repo, key, true, 'fuzz');
  await recordVerification(repo, { backup: key, at: new Date().toISOString(), ok: true, checks: [] });
});
afterAll(async () => work.cleanup());

type Reader = (key: string) => Promise<unknown>;

/** The function that reads each kind, by key prefix; `must` when a damaged object has to be refused. */
function readerFor(key: string): { read: Reader; must: boolean } | undefined {
  if (key === 'config' || key.startsWith('keys/')) return { read: () => Repository.open(store, provider), must: true };
  if (key.startsWith('backups/')) return { read: (k) => repo.readManifest(k), must: true };
  if (key.startsWith('index/')) return { read: (k) => repo.readIndexObject(k), must: true };
  // Packs hold backups' chunks and WAL's: check --read-data reads them all (its problems are typed errors).
  if (key.startsWith('data/'))
    return {
      read: async () => {
        const r = await checkRepository(repo, { readData: true });
        if (!r.ok) throw r.problems[0];
      },
      must: true,
    };
  if (key.startsWith('wal/')) {
    const { name, scope } = parseWalKey(key)!;
    return { read: () => readWalRecord(repo, scope!, name), must: true };
  }
  if (key.startsWith('stanzas/')) return { read: () => readStanza(repo, 'main'), must: true };
  if (key.startsWith('catalogue/')) return { read: () => repo.listBackups(), must: false };
  if (key.startsWith('keep/')) return { read: () => readKeepMarks(repo), must: false };
  if (key.startsWith('verified/')) return { read: () => readVerifications(repo), must: false };
  return undefined;
}

/** A mutation of `bytes`: flipped bits, a cut, added bytes, or other bytes altogether. */
const mutation = fc.oneof(
  fc.record({ kind: fc.constant('flip' as const), at: fc.nat(), bit: fc.integer({ min: 0, max: 7 }) }),
  fc.record({ kind: fc.constant('cut' as const), keep: fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }) }),
  fc.record({ kind: fc.constant('add' as const), extra: fc.uint8Array({ minLength: 1, maxLength: 64 }) }),
  fc.record({ kind: fc.constant('other' as const), bytes: fc.uint8Array({ maxLength: 512 }) }),
);
type Mutation = typeof mutation extends fc.Arbitrary<infer M> ? M : never;

function mutate(bytes: Uint8Array, m: Mutation): Buffer {
  const b = Buffer.from(bytes);
  switch (m.kind) {
    case 'flip':
      if (b.length > 0) b[m.at % b.length]! ^= 1 << m.bit;
      return b;
    case 'cut':
      return b.subarray(0, Math.floor(m.keep * b.length));
    case 'add':
      return Buffer.concat([b, m.extra]);
    case 'other':
      return Buffer.from(m.bytes);
  }
}

function sameJson(a: Uint8Array, b: Uint8Array): boolean {
  try {
    return JSON.stringify(JSON.parse(Buffer.from(a).toString('utf8'))) === JSON.stringify(JSON.parse(Buffer.from(b).toString('utf8')));
  } catch {
    return false;
  }
}

describe('stored objects, mutated', () => {
  it('are refused with typed errors by what reads them, never with an untyped one', async () => {
    const keys = (await collectList(store, '')).map((o) => o.key).filter((k) => !k.startsWith('locks/'));
    const kinds = new Set(keys.map((k) => k.split('/')[0]));
    for (const kind of ['config', 'keys', 'backups', 'index', 'data', 'wal', 'stanzas', 'catalogue', 'keep', 'verified']) expect(kinds).toContain(kind);
    let inputs = 0;
    let untyped = 0;
    for (const key of keys) {
      const reader = readerFor(key);
      expect(reader, `no reader for ${key}`).toBeDefined();
      const original = await store.get(key);
      await fc.assert(
        fc.asyncProperty(mutation, async (m) => {
          const bad = mutate(original, m);
          // Bytes that say the same (the config is JSON: white space cut or added) are no damage.
          if (bad.equals(Buffer.from(original)) || sameJson(original, bad)) return;
          await store.delete(key);
          await store.put(key, bad);
          inputs++;
          try {
            await reader!.read(key);
            expect(reader!.must, `${key} mutated (${m.kind}) was read without complaint`).toBe(false);
          } catch (e) {
            if (!(e instanceof CofferError)) {
              untyped++;
              throw new Error(`${key} mutated (${m.kind}): untyped ${(e as Error).name}: ${(e as Error).message}`);
            }
          } finally {
            await store.delete(key);
            await store.put(key, original);
          }
        }),
        { numRuns: sized(key.startsWith('data/') ? 3 : 12, key.startsWith('data/') ? 30 : 200) },
      );
    }
    expect(untyped).toBe(0);
    await addFigures('fuzz-stored', { fuzzInputs: inputs, untyped });
  });
});
