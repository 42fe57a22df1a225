/**
 * Index consolidation: index objects that list a pack being deleted, and
 * small ones, are rewritten into fewer, larger objects without the deleted
 * packs' entries — so opening, backing up and restoring read an index that
 * follows the live data, not the history of every backup. New objects are
 * durable before old ones are removed: a crash in between leaves entries
 * listed twice, which readers take as the same location.
 */
import { isPageIndexKey } from '../format/keys-layout.js';
import { CorruptObjectError } from '../errors.js';
import { copyPackRecord, forEachPackRecord, joinPackRecords, type PackRecord } from '../format/index-file.js';
import { deleteUnlessLocked, type LockedObject } from '../repository/object-lock.js';
import type { Repository } from '../repository/repository.js';

/** Entries per rewritten index object (44 bytes each: about 8 MiB). */
export const ENTRIES_PER_OBJECT = 190_000;
/** Objects listing fewer entries than this are merged even when nothing in them is deleted. */
const SMALL_OBJECT = ENTRIES_PER_OBJECT / 4;

/** What the mark learnt of one index object. */
export interface IndexObjectUse {
  packs: string[];
  entries: number;
}

export interface ConsolidatePlan {
  /** Objects to rewrite, by kind. */
  rewrite: string[];
}

/** Which of `objects` to rewrite: those listing a dropped pack, and small ones when there are two or more to merge. */
export function planConsolidation(objects: ReadonlyMap<string, IndexObjectUse>, dropped: (packSha: string) => boolean): string[] {
  const out: string[] = [];
  for (const pages of [false, true]) {
    const mustGo: string[] = [];
    const small: string[] = [];
    for (const [key, use] of objects) {
      if (isPageIndexKey(key) !== pages) continue;
      if (use.packs.some(dropped)) mustGo.push(key);
      else if (use.entries < SMALL_OBJECT) small.push(key);
    }
    // Rewriting one small object alone gains nothing.
    out.push(...mustGo, ...(mustGo.length + small.length >= 2 ? small : []));
  }
  return out.sort();
}

/**
 * Rewrites `keys` into as few objects as the entries need, without the
 * dropped packs, then removes them. Returns the keys written, and the old
 * objects Object Lock retention kept in place: they still list what they
 * listed, so the caller must not delete any pack they name.
 */
export async function consolidateIndex(repo: Repository, keys: readonly string[], dropped: (packSha: string) => boolean): Promise<{ written: string[]; locked: LockedObject[] }> {
  const written: string[] = [];
  for (const pages of [false, true]) {
    // Pack records are copied as bytes (no object per entry): an object's worth at a time.
    let batch: PackRecord[] = [];
    let batchEntries = 0;
    const flush = async () => {
      if (batch.length > 0) written.push((await repo.writeIndexPlain(joinPackRecords(batch), pages)).key);
      batch = [];
      batchEntries = 0;
    };
    for (const key of keys) {
      if (isPageIndexKey(key) !== pages) continue;
      const plain = await repo.openIndexObject(key);
      const records: { n: number; record: PackRecord }[] = [];
      try {
        forEachPackRecord(plain, (sha, n, start, end) => {
          if (!dropped(sha)) records.push({ n, record: copyPackRecord(plain, start, end) });
        });
      } catch (e) {
        throw new CorruptObjectError(key, (e as Error).message);
      }
      for (const r of records) {
        if (batchEntries + r.n > ENTRIES_PER_OBJECT) await flush();
        batch.push(r.record);
        batchEntries += r.n;
      }
    }
    await flush();
  }
  const locked: LockedObject[] = [];
  for (const key of keys) {
    const l = await deleteUnlessLocked(repo, key);
    if (l) locked.push(l);
  }
  return { written, locked };
}
