/**
 * `check`: every manifest and index opens, every chunk a manifest references
 * is indexed, and every pack the index names for those chunks exists. With
 * `readData`, every pack is read whole, checked against its SHA-256 name, and
 * every chunk in it is decrypted and checked against its id.
 */
import pLimit from 'p-limit';
import { asBuffer, sha256Hex } from '../bytes.js';
import { CofferError, CorruptObjectError, MissingObjectError, PermissionDeniedError, StoreAccessDeniedError } from '../errors.js';
import type { IndexedPack } from '../format/index-file.js';
import { isBackupKey, packKey, PACK_PREFIX } from '../format/keys-layout.js';
import { decodeTrailer, trailerLengthOf } from '../format/pack.js';
import { ChunkIndex } from '../repository/chunk-index.js';
import { condemnedPacks } from '../repository/condemned.js';
import { Lease } from '../repository/leases.js';
import { withIndexRetry, type Repository } from '../repository/repository.js';
import { collectList } from '../store/object-store.js';
import { CATALOGUE_PREFIX, manifestKeyOf } from '../format/catalogue-record.js';
import { parseStanzaKey, STANZA_PREFIX } from '../format/stanza-record.js';
import { decodeSummary } from '../repository/catalogue.js';
import { parseWalKey, WAL_PREFIX } from '../format/wal-record.js';
import { decodeStanzaRecord, decodeWalRecord } from '../repository/sealed-records.js';
import { hiddenObjects } from '../repository/hidden.js';

export interface CheckOptions {
  readData?: boolean;
  /** Time-to-live of the check's lease (default 60 s). */
  leaseTtlMs?: number;
  /** Packs read at once with `readData` (default 4). */
  concurrency?: number;
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
  chunksReferenced: number;
  /** Chunks decrypted and checked against their id (with `readData`). */
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
  const firstIndexKeys = await repo.listIndexKeys();
  const packObjects = new Map((await repo.objects.list(PACK_PREFIX)).map((o) => [o.key, o.size]));

  let index = new ChunkIndex();
  let packs = new Map<string, IndexedPack['entries']>();
  /** Who names each pack, for messages: an index object or a WAL record. */
  let namedBy = new Map<string, string>();
  let indexKeys = firstIndexKeys;
  // Index objects a running collection merged away between the listing and the read: list and read again.
  await withIndexRetry(async () => {
    index = new ChunkIndex();
    packs = new Map();
    namedBy = new Map();
    const later: IndexedPack[] = [];
    for (const key of indexKeys) {
      try {
        for (const p of await repo.readIndexObject(key)) {
          // A chunk also in a condemned pack (one being repacked) is located in its other pack.
          if (condemned.has(p.sha)) later.push(p);
          else for (const e of p.entries) index.add(p.sha, e);
          // A pack listed by two index objects (a collection or repair stopped between writing the new object
          // and deleting the old one) is the same pack: its entries count once.
          const before = packs.get(p.sha);
          packs.set(p.sha, before ? mergeEntries(before, p.entries) : p.entries);
          if (!namedBy.has(p.sha)) namedBy.set(p.sha, `listed by index ${key}`);
        }
      } catch (e) {
        if (e instanceof MissingObjectError) {
          // Gone from the listing too: replaced by a merged object meanwhile. Still listed: really missing.
          const now = await repo.listIndexKeys();
          if (!now.includes(key)) {
            indexKeys = now;
            throw e;
          }
        }
        record(e);
      }
    }
    for (const p of later) for (const e of p.entries) index.add(p.sha, e);
  });

  const referenced = new Set<string>();
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
  for (const key of backupKeys) {
    try {
      const m = await repo.readManifest(key);
      for (const entry of m.entries) {
        for (const id of entry.chunks ?? []) {
          referenced.add(id);
          if (!index.hasHex(id)) record(new MissingObjectError(`chunk ${id}`, `referenced by ${key} (${entry.path}) but listed by no index`));
        }
      }
    } catch (e) {
      record(e);
    }
  }
  const neededPacks = new Set<string>();
  for (const id of referenced) {
    const loc = index.get(Buffer.from(id, 'hex'));
    if (loc) neededPacks.add(loc.pack);
  }
  // WAL records locate their own chunks, in packs no index lists.
  for (const key of walKeys) {
    try {
      const record = decodeWalRecord(repo, key, asBuffer(await repo.objects.get(key)));
      for (const [id, [pack, offset, length, rawLength]] of Object.entries(record.locations)) {
        neededPacks.add(pack);
        if (!namedBy.has(pack)) namedBy.set(pack, `referenced by WAL record ${key}`);
        const list = packs.get(pack) ?? [];
        const idBytes = Buffer.from(id, 'hex');
        // Members of a group blob share its offset; the same chunk named by two records is listed once.
        if (!list.some((e) => e.offset === offset && e.id.equals(idBytes))) list.push({ id: idBytes, offset, length, rawLength });
        packs.set(pack, list);
      }
    } catch (e) {
      record(e);
    }
  }
  for (const key of stanzaKeys) {
    try {
      decodeStanzaRecord(repo, key, asBuffer(await repo.objects.get(key)));
    } catch (e) {
      record(e);
    }
  }
  for (const sha of neededPacks) {
    const key = packKey(sha);
    let size = packObjects.get(key);
    // Looked for once more before it is reported: a listing is a snapshot, a missing pack a serious claim.
    if (size === undefined) size = (await repo.objects.head(key))?.size;
    if (size === undefined && (condemned.has(sha) || hidden.has(key))) continue;
    if (size === undefined) {
      record(new MissingObjectError(key, `${namedBy.get(sha) ?? 'needed'} but not in the store`));
      continue;
    }
    packObjects.set(key, size);
    // Sizes are known without reading: a pack shorter than where its chunks end (an empty one, say) is damaged.
    let dataEnd = 0;
    for (const e of packs.get(sha) ?? []) dataEnd = Math.max(dataEnd, e.offset + e.length);
    if (size < dataEnd + 4) record(new CorruptObjectError(key, `${size} bytes, but ${namedBy.get(sha) ?? 'its index'} places chunks up to byte ${dataEnd}`));
  }

  let chunksVerified = 0;
  if (options.readData) {
    const limit = pLimit(Math.max(1, options.concurrency ?? 4));
    const shas = [...packs.keys()].filter((sha) => packObjects.has(packKey(sha)) && !condemned.has(sha));
    let done = 0;
    await Promise.all(
      shas.map((sha) =>
        limit(async () => {
          try {
            const n = await verifyPack(repo, sha, packs.get(sha)!);
            chunksVerified += n;
          } catch (e) {
            record(e);
          }
          options.onProgress?.({ packsDone: ++done, packsTotal: shas.length });
        }),
      ),
    );
  }
  let unindexedPacks = 0;
  for (const key of packObjects.keys()) if (!packs.has(key.slice(key.lastIndexOf('/') + 1))) unindexedPacks++;
  return {
    ok: problems.length === 0,
    backups: backupKeys.length,
    walFiles: walKeys.length,
    stanzaRecords: stanzaKeys.length,
    indexes: indexKeys.length,
    packs: packObjects.size,
    chunksReferenced: referenced.size,
    chunksVerified,
    unindexedPacks,
    problems,
  };
}

function mergeEntries(a: IndexedPack['entries'], b: IndexedPack['entries']): IndexedPack['entries'] {
  const seen = new Set(a.map((e) => `${e.offset}:${e.id.toString('hex')}`));
  return [...a, ...b.filter((e) => !seen.has(`${e.offset}:${e.id.toString('hex')}`))];
}

/** Reads a pack whole and checks its name, every chunk the index lists in it, and its trailer; returns the chunk count. */
export async function verifyPack(repo: Repository, sha: string, unsorted: IndexedPack['entries']): Promise<number> {
  const key = packKey(sha);
  const entries = [...unsorted].sort((a, b) => a.offset - b.offset);
  const data = asBuffer(await repo.objects.get(key));
  if (sha256Hex(data) !== sha) throw new CorruptObjectError(key, 'SHA-256 of its bytes does not match its name');
  for (const e of entries) {
    const plain = repo.objects.codec.decode(e.id, data.subarray(e.offset, e.offset + e.length));
    if (typeof plain === 'string') throw new CorruptObjectError(key, plain);
  }
  // The trailer must open and agree with the index, or the pack cannot rebuild one.
  const tlen = trailerLengthOf(data);
  const trailerBytes = data.subarray(data.length - 4 - tlen, data.length - 4);
  const trailer = repo.objects.codec.openObject(trailerBytes, repo.objects.aad('pack-trailer'));
  if (typeof trailer === 'string') throw new CorruptObjectError(key, `trailer: ${trailer}`);
  const listed = decodeTrailer(trailer);
  if (listed.length !== entries.length || listed.some((l, i) => !l.id.equals(entries[i]!.id) || l.offset !== entries[i]!.offset)) {
    throw new CorruptObjectError(key, 'trailer disagrees with the index');
  }
  return entries.length;
}
