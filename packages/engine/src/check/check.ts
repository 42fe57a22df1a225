/**
 * `check`: every manifest and index opens, every chunk a manifest references
 * is indexed, and every pack the index or a WAL record names exists and is
 * long enough. With `readData`, every pack is read whole, checked against its
 * SHA-256 name, and every chunk in it is decrypted and checked against its id.
 *
 * Memory is a setting (`memoryBytes`) plus a few numbers per pack: the
 * exact lookup of referenced chunks runs in as many passes as the index needs
 * to fit it (`references.ts`), and WAL records and index objects are read a
 * batch, or one, at a time.
 */
import { asBuffer } from '../bytes.js';
import { CofferError, CorruptObjectError, MissingObjectError, PermissionDeniedError, StoreAccessDeniedError } from '../errors.js';
import { CATALOGUE_PREFIX, manifestKeyOf } from '../format/catalogue-record.js';
import { indexEntriesIn } from '../format/index-file.js';
import { INDEX_PREFIX, isBackupKey, packKey, PACK_PREFIX } from '../format/keys-layout.js';
import { parseStanzaKey, STANZA_PREFIX } from '../format/stanza-record.js';
import { parseWalKey, WAL_PREFIX } from '../format/wal-record.js';
import { decodeSummary } from '../repository/catalogue.js';
import { condemnedPacks } from '../repository/condemned.js';
import { hiddenObjects } from '../repository/hidden.js';
import { Lease } from '../repository/leases.js';
import { withIndexRetry, type Repository } from '../repository/repository.js';
import { decodeStanzaRecord } from '../repository/sealed-records.js';
import { LISTED_BY_INDEX, LOCATED_BY_WAL, NEEDED, PackTable } from './pack-table.js';
import { readAllData } from './read-data.js';
import { checkReferences, type ReferenceResult } from './references.js';
import { surveyWalRecords } from './wal-records.js';

export interface CheckOptions {
  readData?: boolean;
  /** Time-to-live of the check's lease (default 60 s). */
  leaseTtlMs?: number;
  /** Packs read at once with `readData` (default 4). */
  concurrency?: number;
  /** Bytes the table of chunk ids may take (default 64 MiB); a larger index is checked in more passes. */
  memoryBytes?: number;
  onProgress?: (p: { packsDone: number; packsTotal: number }) => void;
}

export interface CheckReport {
  ok: boolean;
  backups: number;
  /** Archived WAL files (segments, history files). */
  walFiles: number;
  /** Stanza records (each change of a cluster identity). */
  stanzaRecords: number;
  indexes: number;
  packs: number;
  /** Distinct chunks the manifests reference. */
  chunksReferenced: number;
  /** Passes over the index and manifests that the memory setting took (1 when the index fits). */
  passes: number;
  /** Chunks decrypted and checked against their id (with `readData`): every chunk of every pack read. */
  chunksVerified: number;
  /** Packs in the store that no index lists (left by an interrupted backup; harmless). */
  unindexedPacks: number;
  problems: CofferError[];
}

export async function checkRepository(repo: Repository, options: CheckOptions = {}): Promise<CheckReport> {
  // Under a lease, so that a garbage collection that condemns packs waits for this check rather than delete
  // packs it is reading; packs a running collection condemned (read before any listing) are not judged.
  let lease: Lease | undefined;
  try {
    lease = await Lease.acquire(repo, { purpose: 'check', ...(options.leaseTtlMs !== undefined ? { ttlMs: options.leaseTtlMs } : {}) });
  } catch (e) {
    // Read-only credentials check too; without a lease, a collection running meanwhile may show as missing packs.
    if (!(e instanceof StoreAccessDeniedError || e instanceof PermissionDeniedError)) throw e;
    repo.onWarning(`checking without a lease (${e.message}): a garbage collection running meanwhile could show as missing packs`);
  }
  try {
    return await checkUnderLease(repo, options, await condemnedPacks(repo));
  } finally {
    await lease?.release();
  }
}

/** 64 MiB: about 1.3 million ids a pass (the benchmark: 50 million chunks in about 41 passes). */
export const DEFAULT_CHECK_MEMORY = 64 * 1024 * 1024;

async function checkUnderLease(repo: Repository, options: CheckOptions, condemned: ReadonlySet<string>): Promise<CheckReport> {
  const problems: CofferError[] = [];
  const record = (e: unknown) => {
    if (e instanceof CofferError) problems.push(e);
    else throw e;
  };
  // Listed in the reverse of the order writers write (summary after manifest after index after packs):
  // everything a listed object names already exists when its kind is listed, so a backup or wal-push
  // running meanwhile is never reported as missing what it wrote.
  // Summaries follow their manifests, so they are listed before the manifests are.
  // Hidden objects first: one hidden meanwhile is then reported as missing, never as nothing.
  const hidden = new Map((await hiddenObjects(repo)).map((h) => [h.key, h]));
  for (const h of hidden.values()) {
    record(new MissingObjectError(h.key, `hidden by a delete marker${h.hiddenAt ? ` set ${h.hiddenAt.toISOString()}` : ''}; its earlier version (${h.size} bytes) is in the bucket: coffer repair makes it current again`));
  }
  const catalogueKeys = await repo.ownKeys(CATALOGUE_PREFIX, (k) => isBackupKey(manifestKeyOf(k)));
  const walKeys = await repo.ownKeys(WAL_PREFIX, (k) => parseWalKey(k) !== undefined);
  const backupKeys = await repo.listBackupKeys();
  const stanzaKeys = await repo.ownKeys(STANZA_PREFIX, (k) => parseStanzaKey(k) !== undefined);
  let indexKeys = await repo.listIndexKeys();
  const packs = new PackTable();
  let packsInStore = 0;
  for await (const o of repo.objects.each(PACK_PREFIX)) {
    const sha = o.key.slice(o.key.lastIndexOf('/') + 1);
    if (packKey(sha) !== o.key) continue;
    packs.stored(packs.number(sha), o.size);
    packsInStore++;
  }

  // Catalogue summaries: each opens and names its manifest, and no manifest's summary is missing its backup.
  const manifestSet = new Set(backupKeys);
  for (const key of catalogueKeys) {
    try {
      const manifestKey = manifestKeyOf(key);
      if (!manifestSet.has(manifestKey) && !(await repo.objects.head(manifestKey))) throw new MissingObjectError(manifestKey, `summarised by ${key} but not in the store`);
      decodeSummary(repo, key, await repo.objects.get(key), manifestKey);
    } catch (e) {
      record(e);
    }
  }

  // Index objects a running collection merged away between the listing and the read: list and read again.
  const memoryBytes = options.memoryBytes ?? DEFAULT_CHECK_MEMORY;
  // What an attempt learnt of packs stays true on the next: a merged index object lists the same packs.
  const refs: ReferenceResult = await withIndexRetry(async () => {
    const expectedEntries = indexEntriesIn(await repo.objects.list(INDEX_PREFIX));
    try {
      return await checkReferences(repo, { indexKeys, manifestKeys: backupKeys, condemned, packs, memoryBytes, expectedEntries });
    } catch (e) {
      if (e instanceof MissingObjectError) indexKeys = await repo.listIndexKeys();
      throw e;
    }
  });
  problems.push(...refs.problems);

  const badWalKeys = new Set<string>();
  await surveyWalRecords(repo, walKeys, packs, badWalKeys, record);
  for (const key of stanzaKeys) {
    try {
      decodeStanzaRecord(repo, key, asBuffer(await repo.objects.get(key)));
    } catch (e) {
      record(e);
    }
  }

  for (let n = 0; n < packs.size; n++) {
    if (!packs.has(n, NEEDED)) continue;
    const sha = packs.shas[n]!;
    const key = packKey(sha);
    let size = packs.storedSize(n);
    // Looked for once more before it is reported: a listing is a snapshot, a missing pack a serious claim.
    if (size === undefined) size = (await repo.objects.head(key))?.size;
    if (size === undefined && (condemned.has(sha) || hidden.has(key))) continue;
    if (size === undefined) {
      record(new MissingObjectError(key, `${packs.namedBy(n)} but not in the store`));
      continue;
    }
    packs.stored(n, size);
    // Sizes are known without reading: a pack shorter than where its chunks end (an empty one, say) is damaged.
    if (size < packs.dataEnd(n) + 4) record(new CorruptObjectError(key, `${size} bytes, but ${packs.namedBy(n)} places chunks up to byte ${packs.dataEnd(n)}`));
  }

  let chunksVerified = 0;
  if (options.readData) {
    chunksVerified = await readAllData(repo, {
      indexKeys,
      walKeys,
      badIndexKeys: refs.badIndexKeys,
      badWalKeys,
      packs,
      readable: (n) => packs.storedSize(n) !== undefined && !condemned.has(packs.shas[n]!),
      concurrency: options.concurrency ?? 4,
      record,
      ...(options.onProgress ? { onProgress: options.onProgress } : {}),
    });
  }
  let unindexedPacks = 0;
  for (let n = 0; n < packs.size; n++) if (packs.storedSize(n) !== undefined && !packs.has(n, LISTED_BY_INDEX | LOCATED_BY_WAL)) unindexedPacks++;
  return {
    ok: problems.length === 0,
    backups: backupKeys.length,
    walFiles: walKeys.length,
    stanzaRecords: stanzaKeys.length,
    indexes: indexKeys.length,
    packs: packsInStore,
    chunksReferenced: refs.referenced,
    passes: refs.passes,
    chunksVerified,
    unindexedPacks,
    problems,
  };
}
