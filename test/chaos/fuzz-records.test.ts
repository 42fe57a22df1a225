/**
 * Sealed JSON records that open under the repository's key — authentic — but
 * are malformed: any JSON value, or a good record with one field replaced or
 * taken out. A writer's bug or another version could leave such a record;
 * every reader must refuse it with a typed error naming it (each kind's
 * schema), never fail later with a TypeError. The stored-bytes fuzz
 * (fuzz-stored) cannot reach these decoders: the AEAD tag stops it first.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backupFiles, CofferError, collectList, LocalKeyProvider, MemoryStore, readKeepMarks, readVerifications, Repository, walPush } from '@coffer/engine';
import { wrapCarried } from '../../packages/engine/dist/format/carried-sha.js';
import { CATALOGUE_MAGIC } from '../../packages/engine/dist/format/catalogue-record.js';
import { CONDEMNED_MAGIC } from '../../packages/engine/dist/format/condemned-record.js';
import { DAMAGE_MAGIC } from '../../packages/engine/dist/format/damage-record.js';
import { KEEP_MAGIC } from '../../packages/engine/dist/format/keep-record.js';
import { LEASE_MAGIC } from '../../packages/engine/dist/format/lease-record.js';
import { STANZA_MAGIC } from '../../packages/engine/dist/format/stanza-record.js';
import { VERIFIED_MAGIC } from '../../packages/engine/dist/format/verification-record.js';
import { WAL_MAGIC } from '../../packages/engine/dist/format/wal-record.js';
import { decodeSummary } from '../../packages/engine/dist/repository/catalogue.js';
import { readCondemnedRecords } from '../../packages/engine/dist/repository/condemned.js';
import { decodeLeaseRecord } from '../../packages/engine/dist/repository/leases.js';
import { decodeDamageRecord, decodeStanzaRecord, decodeWalRecord, sealJson } from '../../packages/engine/dist/repository/sealed-records.js';
import { scratch } from '../support/tree.js';
import { fakeCluster, segment } from '../support/wal.js';
import { addFigures, sized } from './figures.js';

const SYS = 7_600_000_000_000_000_002n;
let work: { dir: string; cleanup: () => Promise<void> };
let store: MemoryStore;
let repo: Repository;
let manifestKey: string;

beforeAll(async () => {
  work = await scratch('coffer-fuzz-records-');
  const src = join(work.dir, 'src');
  await mkdir(src, { recursive: true });
  await writeFile(join(src, 'a.bin'), randomBytes(20_000));
  store = new MemoryStore();
  repo = await Repository.init(store, LocalKeyProvider.fromPassphrase('fuzz records'));
  manifestKey = (await backupFiles(repo, src)).key;
  const pgdata = await fakeCluster(join(work.dir, 'pgdata'), SYS);
  await writeFile(join(pgdata, 'pg_wal', '000000010000000000000001'), segment(SYS, 1, 1 << 20));
  await walPush(repo, join(pgdata, 'pg_wal', '000000010000000000000001'));
});
afterAll(async () => work.cleanup());

interface Kind {
  name: string;
  /** A well-formed record of the kind, as JSON. */
  good: () => Promise<Record<string, unknown>>;
  /** Reads `value` stored as a record of the kind the way Coffer reads it. */
  read: (value: unknown) => Promise<unknown>;
}

const label = () => manifestKey.slice('backups/'.length);

/** Stores `bytes` at `key`, reads with `read` (which lists the store itself), and takes the object away again. */
async function storedThenRead(key: string, bytes: Uint8Array, read: () => Promise<unknown>): Promise<unknown> {
  await store.delete(key);
  await store.put(key, bytes);
  try {
    return await read();
  } finally {
    await store.delete(key);
  }
}

const kinds: Kind[] = [
  {
    name: 'WAL record',
    good: async () => {
      const key = (await collectList(store, 'wal/')).map((o) => o.key)[0]!;
      return JSON.parse(JSON.stringify(decodeWalRecord(repo, key, await store.get(key))));
    },
    read: async (v) => {
      const key = (await collectList(store, 'wal/')).map((o) => o.key)[0]!;
      return decodeWalRecord(repo, key, sealJson(repo, WAL_MAGIC, 'wal', v));
    },
  },
  {
    name: 'stanza record',
    good: async () => ({ format: 2, stanza: 'main', seq: 1, history: [{ systemIdentifier: SYS.toString(), major: 15, walSegmentSize: 1 << 20, since: new Date().toISOString(), reason: 'create' }] }),
    read: async (v) => decodeStanzaRecord(repo, 'stanzas/main/00000001', sealJson(repo, STANZA_MAGIC, 'stanza', v)),
  },
  {
    name: 'catalogue summary',
    good: async () => {
      const key = (await collectList(store, 'catalogue/')).map((o) => o.key)[0]!;
      return { format: 2, summary: JSON.parse(JSON.stringify(decodeSummary(repo, key, await store.get(key), manifestKey))) };
    },
    read: async (v) => decodeSummary(repo, `catalogue/${label()}`, sealJson(repo, CATALOGUE_MAGIC, 'catalogue', v), manifestKey),
  },
  {
    name: 'damage record',
    good: async () => ({ format: 2, at: new Date().toISOString(), lostPacks: [], incomplete: [manifestKey] }),
    read: async (v) => decodeDamageRecord(repo, 'damage/20260101T000000_000Z-0123456789abcdef', sealJson(repo, DAMAGE_MAGIC, 'damage', v)),
  },
  {
    name: 'keep mark',
    good: async () => ({ format: 2, backup: manifestKey, seq: 1, keep: true, note: 'n', at: new Date().toISOString() }),
    read: (v) => storedThenRead(`keep/${label()}/00000001`, sealJson(repo, KEEP_MAGIC, 'keep', v), () => readKeepMarks(repo)),
  },
  {
    name: 'verification record',
    good: async () => ({ format: 2, backup: manifestKey, at: new Date().toISOString(), ok: true, checks: ['restore'] }),
    read: (v) => storedThenRead(`verified/${label()}/20260101T000000_000Z-0123456789abcdef`, sealJson(repo, VERIFIED_MAGIC, 'verification', v), () => readVerifications(repo)),
  },
  {
    name: 'condemnation record',
    good: async () => ({ format: 2, gc: 'gc-0123456789abcdef', packs: ['ab'.repeat(32)] }),
    read: (v) => storedThenRead('condemned/gc-0123456789abcdef', sealJson(repo, CONDEMNED_MAGIC, 'condemned', v), () => readCondemnedRecords(repo)),
  },
  {
    name: 'lease record',
    good: async () => ({ format: 2, lease: 'backup-0123456789abcdef', seq: 0, purpose: 'backup', mode: 'shared', ttlMs: 60_000, host: 'h', pid: 1 }),
    read: async (v) => decodeLeaseRecord('locks/backup-0123456789abcdef/00000000', wrapCarried(LEASE_MAGIC, Buffer.from(JSON.stringify(v)))),
  },
];

/** A good record with one field, at any depth, replaced by another JSON value or taken out. */
function spoiled(good: Record<string, unknown>): fc.Arbitrary<unknown> {
  const paths: (string | number)[][] = [];
  const walk = (v: unknown, path: (string | number)[]) => {
    if (path.length) paths.push(path);
    if (Array.isArray(v)) v.forEach((x, i) => walk(x, [...path, i]));
    else if (v && typeof v === 'object') for (const [k, x] of Object.entries(v)) walk(x, [...path, k]);
  };
  walk(good, []);
  return fc.tuple(fc.constantFrom(...paths), fc.option(fc.jsonValue({ maxDepth: 2 }), { nil: undefined, freq: 4 })).map(([path, value]) => {
    const copy = JSON.parse(JSON.stringify(good)) as Record<string, unknown>;
    let at: Record<string | number, unknown> = copy;
    for (const p of path.slice(0, -1)) at = at[p] as Record<string | number, unknown>;
    const last = path[path.length - 1]!;
    if (value === undefined) {
      if (Array.isArray(at)) at.splice(Number(last), 1);
      else delete at[last];
    } else at[last] = value;
    return copy;
  });
}

describe('authentic records, malformed', () => {
  it('are refused by every reader with a typed error, or read as what they are — never an untyped error', async () => {
    let inputs = 0;
    let untyped = 0;
    for (const kind of kinds) {
      const good = await kind.good();
      // The good record itself reads: the schema takes what writers write.
      await kind.read(good);
      await fc.assert(
        fc.asyncProperty(fc.oneof(fc.jsonValue({ maxDepth: 3 }), spoiled(good)), async (value) => {
          inputs++;
          try {
            await kind.read(value);
          } catch (e) {
            if (e instanceof CofferError) return;
            untyped++;
            throw new Error(`${kind.name} ${JSON.stringify(value).slice(0, 200)}: untyped ${(e as Error).name}: ${(e as Error).message}`);
          }
        }),
        { numRuns: sized(60, 1000) },
      );
    }
    expect(untyped).toBe(0);
    await addFigures('fuzz-records', { fuzzInputs: inputs, untyped });
  });
});
