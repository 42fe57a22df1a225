/**
 * Object Lock as the deleting and maintaining commands meet it (expire, gc):
 * a delete the store refuses because the object is under retention is not a
 * failure but a postponement, reported with the date it becomes possible; and
 * what is still live has its retention extended before it runs out, because
 * with deduplication an old pack outlives the lock it was written with.
 */
import pLimit from 'p-limit';
import { MissingObjectError, StoreAccessDeniedError } from '../errors.js';
import type { ObjectRetention } from '../store/object-store.js';
import type { Repository } from './repository.js';

/** An object left in place because its retention has not passed. */
export interface LockedObject {
  key: string;
  mode: ObjectRetention['mode'];
  /** When it can be deleted (ISO time). */
  until: string;
}

/**
 * Deletes `key` unless it is under retention, which is then returned
 * (nothing deleted): the retention is asked first, so no delete is tried
 * that retention forbids, and a refusal is understood too (a lock set since).
 * Any other refusal — no delete permission — is thrown as it came.
 */
export async function deleteUnlessLocked(repo: Repository, key: string): Promise<LockedObject | undefined> {
  const before = await lockedObject(repo, key);
  if (before) return before;
  try {
    await repo.objects.delete(key);
    return undefined;
  } catch (e) {
    const versions = repo.objects.versions;
    if (!(e instanceof StoreAccessDeniedError) || !versions) throw e;
    const r = await versions.retention(key);
    if (!r) throw e;
    return { key, mode: r.mode, until: r.until.toISOString() };
  }
}

/** The retention `key` is under, when the store keeps retention. */
export async function lockedObject(repo: Repository, key: string): Promise<LockedObject | undefined> {
  const r = await repo.objects.versions?.retention(key);
  return r ? { key, mode: r.mode, until: r.until.toISOString() } : undefined;
}

/** Earliest and latest dates among locked objects, for a one-line summary. */
export function lockSpan(locked: readonly LockedObject[]): { from: string; to: string } | undefined {
  if (locked.length === 0) return undefined;
  const dates = locked.map((l) => l.until).sort();
  return { from: dates[0]!, to: dates[dates.length - 1]! };
}

/**
 * Extends the retention of `keys` (objects still live) to a full period from
 * `now` where less than half of it is left, in the store's lock mode.
 * Nothing to do on a store that sets no retention. Returns how many were
 * extended.
 */
export async function extendRetention(repo: Repository, keys: Iterable<string>, now = new Date()): Promise<number> {
  const versions = repo.objects.versions;
  const policy = versions?.lockPolicy;
  if (!versions || !policy) return 0;
  const period = policy.days * 86_400_000;
  const until = new Date(now.getTime() + period);
  const renewBefore = now.getTime() + period / 2;
  const limit = pLimit(Math.max(2, Math.min(16, repo.objects.connections)));
  let extended = 0;
  await Promise.all(
    [...keys].map((key) =>
      limit(async () => {
        const r = await versions.retention(key);
        if (r && r.until.getTime() >= renewBefore) return;
        try {
          // A COMPLIANCE lock stays COMPLIANCE: its mode is never lowered.
          await versions.extendRetention(key, { mode: r?.mode === 'COMPLIANCE' ? 'COMPLIANCE' : policy.mode, until });
          extended++;
        } catch (e) {
          // Removed since it was listed (an expire meanwhile): nothing to keep.
          if (!(e instanceof MissingObjectError)) throw e;
        }
      }),
    ),
  );
  return extended;
}
