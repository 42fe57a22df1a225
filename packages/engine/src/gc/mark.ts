/**
 * The mark of garbage collection: which packs hold chunks that some backup
 * or WAL file still references. Memory is a setting, not a multiple of the
 * repository: live chunk ids go into a Bloom filter (`id-filter.ts`) sized
 * from what the index objects weigh, index objects are then scanned in place
 * once (each pack's entries counted and weighed against the filter), and
 * manifests are read one at a time and index objects two at a time.
 */
import pLimit from 'p-limit';
import { CorruptObjectError, MissingObjectError } from '../errors.js';
import { ID_BYTES } from '../format/chunk-codec.js';
import { indexEntriesIn, scanIndex } from '../format/index-file.js';
import { INDEX_PREFIX, isPageIndexKey, PACK_PREFIX } from '../format/keys-layout.js';
import { parseWalKey, WAL_PREFIX } from '../format/wal-record.js';
import { ReadScratch } from '../repository/read-scratch.js';
import type { Repository } from '../repository/repository.js';
import { decodeWalRecord } from '../repository/sealed-records.js';
import type { IndexObjectUse } from './consolidate.js';
import { IdFilter } from './id-filter.js';

/** What the mark knows of one pack. */
export interface PackUse {
  sha: string;
  /** Stored size, from the listing of `data/` (undefined: indexed but not in the store). */
  size: number | undefined;
  /** Listed by an index object of relation pages. */
  pages: boolean;
  /** Index entries and their plaintext bytes, in all. */
  entries: number;
  rawBytes: number;
  /** Entries the filter says are (maybe) live, and their plaintext bytes. */
  liveEntries: number;
  liveRawBytes: number;
  /** A WAL record locates chunks in it. */
  wal: boolean;
}

export interface MarkResult {
  filter: IdFilter;
  packs: Map<string, PackUse>;
  /** What the mark saw, so that the sweep can tell what came after. */
  manifests: Set<string>;
  walRecords: Set<string>;
  indexObjects: string[];
  /** What each index object lists. */
  indexUse: Map<string, IndexObjectUse>;
  /** Index entries in all. */
  entries: number;
}

export interface MarkOptions {
  /** Bytes the live-id filter may take (default 48 MiB). */
  filterBytes?: number;
  onProgress?: (message: string) => void;
}

/**
 * 48 MiB: about 8 bits per id of 50 million. The errors that would cost most (dead packs repacked for a few
 * chunks taken for live) are taken back by the exact second look (`confirm.ts`), whose table stays small at
 * this size; a smaller filter would make it grow faster than the filter shrinks.
 */
export const DEFAULT_FILTER_BYTES = 48 * 1024 * 1024;

/** The SHA-256 a pack key names. */
export function packShaOf(key: string): string {
  return key.slice(key.lastIndexOf('/') + 1);
}

/** Lists WAL record keys (either layout). */
export async function walRecordKeys(repo: Repository): Promise<string[]> {
  return (await repo.objects.list(WAL_PREFIX)).map((o) => o.key).filter((k) => parseWalKey(k) !== undefined);
}

/**
 * Scans index objects a few at a time, each in place: `onPack` for each pack,
 * then `onEntry` for its entries (scanIndex is synchronous, so one object's
 * callbacks never interleave with another's).
 */
export async function scanIndexObjects(
  repo: Repository,
  keys: readonly string[],
  onPack: (key: string, sha: string, n: number) => void,
  onEntry: (bytes: Buffer, at: number) => void,
  onBase?: (bytes: Buffer, entryAt: number, baseAt: number) => void,
): Promise<void> {
  // One at a time: an index object can be 8 MiB, held three times over while it is checked, opened and scanned.
  const limit = pLimit(1);
  await Promise.all(
    keys.map((key) =>
      limit(async () => {
        const plain = await repo.openIndexObject(key);
        try {
          scanIndex(plain, (sha, n) => onPack(key, sha, n), onEntry, onBase);
        } catch (e) {
          throw new CorruptObjectError(key, (e as Error).message);
        }
      }),
    ),
  );
}

/**
 * Calls `onId` for every chunk id the manifests in `keys` reference (ids back
 * to back in `ids`, this one at `at`). A manifest that cannot be read fails
 * the whole: what it names must never be taken for dead.
 */
export async function forEachManifestId(repo: Repository, keys: Iterable<string>, onId: (ids: Buffer, at: number) => void): Promise<void> {
  // Manifests can be large (one id per 8 KiB page: 16 MB for 4 TB of relations): one at a time, decompressed into one buffer.
  const limit = pLimit(1);
  const scratch = new ReadScratch();
  await Promise.all(
    [...keys].map((key) =>
      limit(async () => {
        let ids: Buffer;
        try {
          ids = await repo.manifestChunkIds(key, scratch);
        } catch (e) {
          // Listed, then gone: expire removed the backup meanwhile, and what only it referenced is garbage by the same rule.
          if (e instanceof MissingObjectError && e.key === key) return;
          throw e;
        }
        for (let at = 0; at + ID_BYTES <= ids.length; at += ID_BYTES) onId(ids, at);
      }),
    ),
  );
}

/**
 * Adds to `filter` the base of every page delta it may hold, and their bases
 * in turn, until no more are added: a live delta keeps its whole chain (the
 * filter may only err toward live). After the first pass over `keys`, only
 * the index objects that list deltas are read again.
 */
export async function addDeltaBases(repo: Repository, keys: readonly string[], filter: IdFilter): Promise<void> {
  let withDeltas = keys;
  for (;;) {
    let added = 0;
    let current = '';
    const listing = new Set<string>();
    await scanIndexObjects(
      repo,
      withDeltas,
      (key) => (current = key),
      () => undefined,
      (bytes, entryAt, baseAt) => {
        listing.add(current);
        if (!filter.mayHave(bytes, entryAt) || filter.mayHave(bytes, baseAt)) return;
        filter.add(bytes, baseAt);
        added++;
      },
    );
    if (added === 0) return;
    withDeltas = withDeltas.filter((k) => listing.has(k));
  }
}

/** Adds every chunk id the manifests in `keys` reference to `filter`. */
export function addManifestIds(repo: Repository, keys: Iterable<string>, filter: IdFilter): Promise<void> {
  return forEachManifestId(repo, keys, (ids, at) => filter.add(ids, at));
}

/** Adds what the WAL records in `keys` reference: their chunk ids to `filter`, their packs to `packs`. Records gone since the listing are passed over. */
export async function addWalReferences(repo: Repository, keys: Iterable<string>, filter: IdFilter | undefined, packs: Set<string>): Promise<void> {
  const limit = pLimit(Math.max(2, Math.min(16, repo.objects.connections)));
  await Promise.all(
    [...keys].map((key) =>
      limit(async () => {
        const bytes = await repo.objects.getIfPresent(key);
        if (!bytes) return;
        const record = decodeWalRecord(repo, key, bytes);
        for (const loc of Object.values(record.locations ?? {})) packs.add(loc[0]);
        if (filter) for (const id of record.chunks) filter.add(Buffer.from(id, 'hex'));
      }),
    ),
  );
}

export async function markLive(repo: Repository, options: MarkOptions = {}): Promise<MarkResult> {
  const progress = options.onProgress ?? (() => undefined);
  const [packList, indexObjects, indexList, manifestKeys, walKeys] = await Promise.all([
    repo.objects.list(PACK_PREFIX),
    repo.listIndexKeys(),
    repo.objects.list(INDEX_PREFIX),
    repo.listBackupKeys(),
    walRecordKeys(repo),
  ]);
  const packs = new Map<string, PackUse>();
  const use = (sha: string): PackUse => {
    let p = packs.get(sha);
    if (!p) {
      p = { sha, size: undefined, pages: false, entries: 0, rawBytes: 0, liveEntries: 0, liveRawBytes: 0, wal: false };
      packs.set(sha, p);
    }
    return p;
  };
  for (const o of packList) use(packShaOf(o.key)).size = o.size;

  // The filter is sized from what the index objects weigh (44 bytes an entry, a little less once compressed), so
  // that the index is read once: ids from manifests and WAL first, then each entry counted and weighed.
  const expected = indexEntriesIn(indexList);
  progress(`marking: ${packList.length} packs, ${indexObjects.length} index objects (about ${expected} entries), ${manifestKeys.length} backups, ${walKeys.length} WAL files`);
  const filter = IdFilter.sized(expected + walKeys.length * 64, 0.01, options.filterBytes ?? DEFAULT_FILTER_BYTES);
  await addManifestIds(repo, manifestKeys, filter);
  const walPacks = new Set<string>();
  await addWalReferences(repo, walKeys, filter, walPacks);
  for (const sha of walPacks) use(sha).wal = true;
  await addDeltaBases(repo, indexObjects, filter);

  // Count and weigh each pack's live share (scanIndex is synchronous: one object's callbacks run without interleaving).
  let entries = 0;
  let current: PackUse | undefined;
  let currentObject: IndexObjectUse | undefined;
  const indexUse = new Map<string, IndexObjectUse>();
  await scanIndexObjects(
    repo,
    indexObjects,
    (key, sha) => {
      current = use(sha);
      if (isPageIndexKey(key)) current.pages = true;
      currentObject = indexUse.get(key) ?? { packs: [], entries: 0 };
      indexUse.set(key, currentObject);
      currentObject.packs.push(sha);
    },
    (bytes, at) => {
      const raw = bytes.readUInt32BE(at + ID_BYTES + 8);
      currentObject!.entries++;
      current!.entries++;
      current!.rawBytes += raw;
      entries++;
      if (!filter.mayHave(bytes, at)) return;
      current!.liveEntries++;
      current!.liveRawBytes += raw;
    },
  );
  return { filter, packs, manifests: new Set(manifestKeys), walRecords: new Set(walKeys), indexObjects, indexUse, entries };
}
