/**
 * Garbage collection: deletes packs that no backup or WAL file references,
 * repacks mostly dead ones, and consolidates the index — safely beside
 * backups, WAL archiving and restores that run meanwhile. The protocol, and
 * why it is safe, is in docs/FORMAT.md ("Garbage collection"):
 *
 *  1. take the exclusive `gc` lease;
 *  2. mark: a Bloom filter of every chunk id the manifests and WAL records
 *     reference, each pack weighed against it;
 *  3. repack mostly dead packs (new packs and their index durable first);
 *  4. write the condemnation record (packs to delete), *then* look at the
 *     leases: a writer whose lease shows up may have read the index before
 *     the record existed, so wait until each of them has ended; any later
 *     writer reads the record and stores condemned chunks afresh;
 *  5. look again at what was committed meanwhile (manifests, WAL records,
 *     index objects) and spare every condemned pack it may reference;
 *  6. consolidate the index without the condemned packs, delete the packs,
 *     then the record, ended leases and records of dead collections.
 */
import pLimit from 'p-limit';
import { MissingObjectError, RepositoryBusyError } from '../errors.js';
import { CONDEMNED_PREFIX, isCondemnedKey } from '../format/condemned-record.js';
import { CONFIG_KEY, LOCKABLE_PREFIXES, PACK_PREFIX, packKey } from '../format/keys-layout.js';
import { leaseKey } from '../format/lease-record.js';
import { readCondemnedRecords, writeCondemned } from '../repository/condemned.js';
import type { LeaseObserver, LeaseState, MonotonicClock } from '../repository/leases.js';
import type { Repository } from '../repository/repository.js';
import { consolidateIndex, planConsolidation, type IndexObjectUse } from './consolidate.js';
import { acquireExclusive, describe, sleep } from './exclusive.js';
import { IdFilter } from './id-filter.js';
import { IdTable } from '../repository/id-table.js';
import { addDeltaBases, addManifestIds, addWalReferences, DEFAULT_FILTER_BYTES, markLive, scanIndexObjects, walRecordKeys, type MarkResult, type PackUse } from './mark.js';
import { repack } from './repack.js';
import { confirmLive, type LiveTest } from './confirm.js';
import { hiddenObjects } from '../repository/hidden.js';
import { deleteUnlessLocked, extendRetention, lockedObject, type LockedObject } from '../repository/object-lock.js';

export interface GcOptions {
  /** Report what would be done; write and delete nothing (the lease aside). */
  dryRun?: boolean;
  /** Packs whose dead share of bytes is above this (0–1, default 0.5) are repacked; 1 turns repacking off. */
  repackDeadShare?: number;
  /** Bytes the live-id filter may take (default 48 MiB). */
  filterBytes?: number;
  /** The collection's lease time-to-live (default 60 s). */
  leaseTtlMs?: number;
  /** Longest wait for writers that were working when the collection condemned packs, or for another collection (default 1 h). */
  maxWaitMs?: number;
  clock?: MonotonicClock;
  marginMs?: (ttlMs: number) => number;
  onProgress?: (message: string) => void;
}

export interface GcReport {
  dryRun: boolean;
  packs: number;
  packBytes: number;
  /** Packs deleted: unreferenced (orphans of interrupted writers among them) and emptied by repacking. */
  deletedPacks: number;
  deletedBytes: number;
  /** Packs repacked, bytes read from them, bytes of new packs written. */
  repackedPacks: number;
  repackReadBytes: number;
  repackWrittenBytes: number;
  /** Condemned packs spared because work committed during the collection may reference them. */
  sparedPacks: number;
  indexObjectsBefore: number;
  indexObjectsAfter: number;
  /** Index objects rewritten (merged, or without deleted packs). */
  indexObjectsRewritten: number;
  /** Leases the collection waited for. */
  waitedFor: string[];
  /** Ended leases and condemnation records of dead collections removed. */
  removedLeaseObjects: number;
  /** Objects left in place because Object Lock retention has not passed (packs, and index objects with every pack they list). */
  locked: LockedObject[];
  /** Live objects whose Object Lock retention was extended (a store that sets retention). */
  retentionExtended: number;
  filterBytes: number;
  falsePositiveRate: number;
  /** Mostly dead packs looked at again exactly, and the chunks in them the filter called live that no manifest names. */
  recheckedPacks: number;
  falseLiveChunks: number;
  seconds: number;
}

export const DEFAULT_REPACK_DEAD_SHARE = 0.5;
export const DEFAULT_GC_MAX_WAIT_MS = 60 * 60 * 1000;

export async function collectGarbage(repo: Repository, options: GcOptions = {}): Promise<GcReport> {
  const started = performance.now();
  const progress = options.onProgress ?? (() => undefined);
  const dryRun = options.dryRun ?? false;
  const deadShare = options.repackDeadShare ?? DEFAULT_REPACK_DEAD_SHARE;
  const maxWaitMs = options.maxWaitMs ?? DEFAULT_GC_MAX_WAIT_MS;
  const { lease, observer } = await acquireExclusive(repo, {
    ...(options.leaseTtlMs !== undefined ? { ttlMs: options.leaseTtlMs } : {}),
    ...(options.clock ? { clock: options.clock } : {}),
    ...(options.marginMs ? { marginMs: options.marginMs } : {}),
    maxWaitMs,
    onWait: progress,
  });
  try {
    // An object hidden by a delete marker reads as absent: an index object hidden so would make its packs look unreferenced.
    const hidden = await hiddenObjects(repo);
    if (hidden.length > 0) {
      throw new MissingObjectError(hidden[0]!.key, `hidden by a delete marker${hidden.length > 1 ? ` (and ${hidden.length - 1} more object(s))` : ''}; run coffer repair to make them current again before gc, which would otherwise take what they name for garbage`);
    }
    const filterBytes = options.filterBytes ?? DEFAULT_FILTER_BYTES;
    const mark = await markLive(repo, { filterBytes, onProgress: progress });
    const all = [...mark.packs.values()].filter((p) => p.size !== undefined);
    const referenced = (p: PackUse) => p.wal || p.liveEntries > 0;
    const mostlyDead = (p: PackUse) => !p.wal && p.liveEntries > 0 && p.rawBytes > 0 && 1 - p.liveRawBytes / p.rawBytes > deadShare;
    // What the filter calls live in mostly dead packs is looked at again, exactly (a quarter of the filter's memory, 1 MiB at least).
    const confirmed = await confirmLive(repo, mark, all.filter(mostlyDead), Math.max(filterBytes / 4, 1 << 20));
    if (confirmed.packs > 0) progress(`looked again at ${confirmed.packs} mostly dead pack(s): ${confirmed.falseLive} chunk(s) the filter called live are not`);
    let unreferenced = all.filter((p) => !referenced(p));
    let toRepack = all.filter(mostlyDead);
    const locked: LockedObject[] = [];
    // Under Object Lock, first what retention keeps: index objects that cannot be rewritten keep every pack they list.
    let indexUse: ReadonlyMap<string, IndexObjectUse> = mark.indexUse;
    if (!dryRun) {
      const candidates = new Set([...unreferenced, ...toRepack].map((p) => p.sha));
      indexUse = await leaveLockedIndex(repo, mark.indexUse, candidates, locked);
      unreferenced = unreferenced.filter((p) => candidates.has(p.sha));
      toRepack = toRepack.filter((p) => candidates.has(p.sha));
    }
    const report: GcReport = {
      dryRun,
      packs: all.length,
      packBytes: sum(all.map((p) => p.size!)),
      deletedPacks: 0,
      deletedBytes: 0,
      repackedPacks: toRepack.length,
      repackReadBytes: sum(toRepack.map((p) => p.size!)),
      repackWrittenBytes: 0,
      sparedPacks: 0,
      indexObjectsBefore: mark.indexObjects.length,
      indexObjectsAfter: mark.indexObjects.length,
      indexObjectsRewritten: 0,
      waitedFor: [],
      removedLeaseObjects: 0,
      locked,
      retentionExtended: 0,
      filterBytes: mark.filter.bytes,
      falsePositiveRate: mark.filter.falsePositiveRate,
      recheckedPacks: confirmed.packs,
      falseLiveChunks: confirmed.falseLive,
      seconds: 0,
    };
    progress(`${unreferenced.length} unreferenced pack(s), ${toRepack.length} to repack (more than ${Math.round(deadShare * 100)}% dead)`);
    if (dryRun) {
      report.deletedPacks = unreferenced.length + toRepack.length;
      report.deletedBytes = sum([...unreferenced, ...toRepack].map((p) => p.size!));
      const gone = new Set(report.deletedPacks > 0 ? [...unreferenced, ...toRepack].map((p) => p.sha) : []);
      report.indexObjectsRewritten = planConsolidation(mark.indexUse, (sha) => gone.has(sha)).length;
      return finish(report);
    }

    const newIndexObjects: string[] = [];
    for (const pages of [false, true]) {
      const group = toRepack.filter((p) => p.pages === pages).map((p) => p.sha);
      if (group.length === 0) continue;
      const r = await repack(repo, group, pages, confirmed.live, (what) => lease.prove(what), progress);
      report.repackWrittenBytes += r.bytesWritten;
      newIndexObjects.push(...r.indexObjects);
    }

    const condemned = new Set([...unreferenced, ...toRepack].map((p) => p.sha));
    if (condemned.size > 0) {
      const recordKey = await writeCondemned(repo, lease.id, [...condemned].sort());
      // Only now look at who is working: a writer not seen here took its lease after the record existed.
      const working = (await observer.look()).filter((s) => s.lease !== lease.id && !observer.ended(s));
      report.waitedFor = working.map((s) => s.lease);
      if (working.length > 0) progress(`waiting for ${describe(working)} to end`);
      await waitForEnd(observer, working, maxWaitMs, lease.prove.bind(lease), async () => {
        await repo.objects.delete(recordKey);
      });
      const spared = await committedMeanwhile(repo, mark, confirmed.live, new Set([...condemned]), new Set(newIndexObjects), filterBytes);
      for (const sha of spared) condemned.delete(sha);
      report.sparedPacks = spared.size;

      lease.prove('deleting packs');
      const rewrite = planConsolidation(indexUse, (sha) => condemned.has(sha));
      lease.prove('rewriting the index');
      const { written, locked: stuck } = await consolidateIndex(repo, rewrite, (sha) => condemned.has(sha));
      // An index object locked since still lists its packs: deleting one would leave it naming a pack that is gone.
      for (const l of stuck) for (const sha of mark.indexUse.get(l.key)?.packs ?? []) condemned.delete(sha);
      report.locked.push(...stuck);
      report.indexObjectsRewritten = rewrite.length - stuck.length;
      report.indexObjectsAfter = mark.indexObjects.length - rewrite.length + stuck.length + written.length + newIndexObjects.length;
      // Several at a time, as many as the store takes: each delete is a request (S3) or a directory fsync (a local store).
      const limit = pLimit(Math.max(2, Math.min(16, repo.objects.connections)));
      await Promise.all(
        [...condemned].map((sha) =>
          limit(async () => {
            lease.prove('deleting packs');
            // A pack under retention stays, out of the index now: a later collection deletes it once its retention has passed.
            const l = await deleteUnlessLocked(repo, packKey(sha));
            if (l) {
              report.locked.push(l);
              return;
            }
            report.deletedPacks++;
            report.deletedBytes += mark.packs.get(sha)?.size ?? 0;
          }),
        ),
      );
      await repo.objects.delete(recordKey);
    } else {
      const rewrite = planConsolidation(indexUse, () => false);
      if (rewrite.length > 0) {
        const { written, locked: stuck } = await consolidateIndex(repo, rewrite, () => false);
        report.locked.push(...stuck);
        report.indexObjectsRewritten = rewrite.length - stuck.length;
        report.indexObjectsAfter = mark.indexObjects.length - rewrite.length + stuck.length + written.length;
      }
      report.indexObjectsAfter += newIndexObjects.length;
    }
    report.removedLeaseObjects = await removeEnded(repo, observer, lease.id);
    if (repo.objects.versions?.lockPolicy) {
      progress('extending Object Lock retention of live objects');
      // Repacked packs are dead (their live chunks were copied into new packs, written with a full retention).
      const repacked = new Set(toRepack.map((p) => p.sha));
      const livePacks = all.filter((p) => referenced(p) && !repacked.has(p.sha)).map((p) => packKey(p.sha));
      report.retentionExtended = await extendRetention(repo, [...livePacks, ...(await lockableMetadata(repo))]);
    }
    return finish(report);
  } finally {
    await lease.release();
  }

  function finish(report: GcReport): GcReport {
    report.seconds = (performance.now() - started) / 1000;
    return report;
  }
}

function sum(values: readonly number[]): number {
  return values.reduce((a, b) => a + b, 0);
}

/** Waits until every lease in `leases` has ended; on giving up, `abandon` runs (the record is withdrawn) and the collection fails. */
async function waitForEnd(observer: LeaseObserver, leases: readonly LeaseState[], maxWaitMs: number, proveOwn: (what: string) => void, abandon: () => Promise<void>): Promise<void> {
  const ids = new Set(leases.map((s) => s.lease));
  const deadline = performance.now() + maxWaitMs;
  for (;;) {
    const open = (await observer.look()).filter((s) => ids.has(s.lease) && !observer.ended(s));
    // Leases that vanished from the store altogether (removed by hand) count as ended.
    if (open.length === 0) return;
    proveOwn('waiting for writers');
    if (performance.now() > deadline) {
      await abandon();
      throw new RepositoryBusyError(`garbage collection gave up after ${(maxWaitMs / 1000).toFixed(0)} s waiting for ${describe(open)}; nothing was deleted`);
    }
    await sleep(Math.min(1000, Math.max(20, Math.min(...open.map((s) => observer.remaining(s))))));
  }
}

/**
 * Condemned packs that work committed since the mark may reference: packs
 * listed by new index objects or located by new WAL records, and packs
 * holding a chunk a new manifest names that the mark did not count live (a
 * live one was copied by the repack, or its pack was never condemned) and
 * that no new index object lists again (writers that started after the
 * condemnation store such chunks afresh; those that started before may
 * reference the condemned copy).
 */
async function committedMeanwhile(repo: Repository, mark: MarkResult, countedLive: LiveTest, condemned: ReadonlySet<string>, ownIndexObjects: ReadonlySet<string>, budgetBytes: number): Promise<Set<string>> {
  const spared = new Set<string>();
  const [indexKeys, manifestKeys, walKeys] = await Promise.all([repo.listIndexKeys(), repo.listBackupKeys(), walRecordKeys(repo)]);
  const seenIndex = new Set(mark.indexObjects);
  const newIndex = indexKeys.filter((k) => !seenIndex.has(k) && !ownIndexObjects.has(k));
  let newEntries = 0;
  await scanIndexObjects(
    repo,
    newIndex,
    (_key, sha) => {
      if (condemned.has(sha)) spared.add(sha);
    },
    () => void newEntries++,
  );
  const walPacks = new Set<string>();
  await addWalReferences(
    repo,
    walKeys.filter((k) => !mark.walRecords.has(k)),
    undefined,
    walPacks,
  );
  for (const sha of walPacks) if (condemned.has(sha)) spared.add(sha);
  const newManifests = manifestKeys.filter((k) => !mark.manifests.has(k));
  if (newManifests.length === 0) return spared;
  // Chunks stored again since the condemnation, exactly (a chance hit here must not pass for a copy); past the budget, none are trusted.
  let stored: IdTable | undefined;
  if (newEntries > 0 && newEntries * 64 <= budgetBytes) {
    const table = new IdTable(newEntries);
    await scanIndexObjects(repo, newIndex, () => undefined, (bytes, at) => void table.addBytes(bytes, at));
    stored = table;
  }
  const fresh = IdFilter.sized(mark.entries + 1, 0.001, budgetBytes);
  await addManifestIds(repo, newManifests, fresh);
  // A new backup's page deltas need their bases, wherever those are stored.
  await addDeltaBases(repo, [...mark.indexObjects, ...newIndex], fresh);
  let current: string | undefined;
  await scanIndexObjects(
    repo,
    mark.indexObjects,
    (_key, sha) => (current = condemned.has(sha) && !spared.has(sha) ? sha : undefined),
    (bytes, at) => {
      if (current === undefined || !fresh.mayHave(bytes, at) || countedLive(current, bytes, at) || stored?.has(bytes, at)) return;
      spared.add(current);
      current = undefined;
    },
  );
  return spared;
}

/**
 * Index objects a rewrite would delete that Object Lock retention keeps in
 * place: left out of the plan (rewriting them would only add copies, every
 * collection one more), and every pack they list spared, since they go on
 * listing it. Those that held up a deletion are reported.
 */
async function leaveLockedIndex(repo: Repository, indexUse: ReadonlyMap<string, IndexObjectUse>, condemned: Set<string>, locked: LockedObject[]): Promise<ReadonlyMap<string, IndexObjectUse>> {
  if (!repo.objects.versions) return indexUse;
  const usable = new Map(indexUse);
  for (const key of planConsolidation(indexUse, (sha) => condemned.has(sha))) {
    const l = await lockedObject(repo, key);
    if (!l) continue;
    usable.delete(key);
    const use = indexUse.get(key)!;
    if (use.packs.some((sha) => condemned.has(sha))) locked.push(l);
    for (const sha of use.packs) condemned.delete(sha);
  }
  return usable;
}

/** Every lockable object but packs (the mark knows which packs are live). */
async function lockableMetadata(repo: Repository): Promise<string[]> {
  const keys = [CONFIG_KEY];
  for (const prefix of LOCKABLE_PREFIXES.filter((p) => p !== PACK_PREFIX)) for (const o of await repo.objects.list(prefix)) keys.push(o.key);
  return keys;
}

/** Removes the records of leases that have ended (all but the newest of live ones too) and condemnation records of collections no longer running. */
async function removeEnded(repo: Repository, observer: LeaseObserver, own: string): Promise<number> {
  let removed = 0;
  const states = await observer.look();
  const alive = new Set(states.filter((s) => !observer.ended(s)).map((s) => s.lease));
  for (const s of states) {
    if (s.lease === own) continue;
    const keep = alive.has(s.lease) ? new Set([leaseKey(s.lease, s.seq)]) : new Set<string>();
    for (const key of s.keys) {
      if (keep.has(key)) continue;
      await repo.objects.delete(key);
      removed++;
    }
  }
  for (const key of (await readCondemnedRecords(repo)).keys()) {
    if (!isCondemnedKey(key) || alive.has(key.slice(CONDEMNED_PREFIX.length))) continue;
    await repo.objects.delete(key);
    removed++;
  }
  return removed;
}
