/**
 * WAL records as `check` reads them: each locates its own chunks, in packs no
 * index lists. Read a batch at a time, so that what check holds of them is
 * one batch's locations and a few numbers per pack, however much WAL is kept.
 */
import pLimit from 'p-limit';
import { CofferError } from '../errors.js';
import type { PackEntry } from '../format/pack.js';
import type { Repository } from '../repository/repository.js';
import { decodeWalRecord } from '../repository/sealed-records.js';
import { LOCATED_BY_WAL, NEEDED, type PackTable } from './pack-table.js';

/** Records read per batch. */
const BATCH = 256;

/** What a batch of records places in each pack, by pack SHA-256, and the first record that does. */
export type WalPlacements = Map<string, { record: string; entries: PackEntry[] }>;

/**
 * Reads the records in `keys`, `BATCH` at a time, and hands each batch's
 * placements to `onBatch`; a record that cannot be read goes to `bad` (once:
 * `skip` holds what went there before).
 */
export async function forEachWalBatch(
  repo: Repository,
  keys: readonly string[],
  skip: Set<string>,
  bad: (e: CofferError) => void,
  onBatch: (placements: WalPlacements) => Promise<void>,
): Promise<void> {
  const limit = pLimit(Math.max(2, Math.min(16, repo.objects.connections)));
  for (let from = 0; from < keys.length; from += BATCH) {
    const placements: WalPlacements = new Map();
    const seen = new Set<string>();
    await Promise.all(
      keys.slice(from, from + BATCH).map((key) =>
        limit(async () => {
          if (skip.has(key)) return;
          try {
            const record = decodeWalRecord(repo, key, await repo.objects.get(key));
            for (const [id, [pack, offset, length, rawLength]] of Object.entries(record.locations)) {
              // Members of a group blob share its offset; the same chunk named by two records is listed once.
              if (seen.has(`${pack}:${offset}:${id}`)) continue;
              seen.add(`${pack}:${offset}:${id}`);
              const placed = placements.get(pack) ?? { record: key, entries: [] };
              placed.entries.push({ id: Buffer.from(id, 'hex'), offset, length, rawLength });
              placements.set(pack, placed);
            }
          } catch (e) {
            if (!(e instanceof CofferError)) throw e;
            skip.add(key);
            bad(e);
          }
        }),
      ),
    );
    await onBatch(placements);
  }
}

/** Numbers the packs WAL records locate chunks in, as needed, with how far their chunks reach. */
export function surveyWalRecords(repo: Repository, keys: readonly string[], packs: PackTable, skip: Set<string>, bad: (e: CofferError) => void): Promise<void> {
  return forEachWalBatch(repo, keys, skip, bad, async (placements) => {
    for (const [sha, { record, entries }] of placements) {
      const n = packs.number(sha, `referenced by WAL record ${record}`);
      packs.mark(n, LOCATED_BY_WAL | NEEDED);
      for (const e of entries) packs.reach(n, e.offset + e.length);
    }
  });
}
