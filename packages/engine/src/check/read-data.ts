/**
 * `check --read-data`: every pack an index object lists or a WAL record
 * locates chunks in, read whole and proven once (`verify-pack.ts`). The
 * listing comes from one index object, or one batch of WAL records, at a
 * time: what is held is that and the packs in flight.
 */
import pLimit from 'p-limit';
import { CofferError, MissingObjectError } from '../errors.js';
import type { PackEntry } from '../format/pack.js';
import type { Repository } from '../repository/repository.js';
import { DAMAGED, LISTED_BY_INDEX, LOCATED_BY_WAL, VERIFIED, type PackTable } from './pack-table.js';
import { verifyPack } from './verify-pack.js';
import { forEachWalBatch } from './wal-records.js';

export interface ReadDataInput {
  indexKeys: readonly string[];
  walKeys: readonly string[];
  /** Index objects and WAL records already found unreadable: passed over. */
  badIndexKeys: ReadonlySet<string>;
  badWalKeys: Set<string>;
  packs: PackTable;
  /** Whether pack `n` is to be read: in the store, and not condemned by a running collection. */
  readable: (n: number) => boolean;
  concurrency: number;
  record: (e: CofferError) => void;
  onProgress?: (p: { packsDone: number; packsTotal: number }) => void;
}

/** Reads and proves every listed pack; returns how many chunks they hold. */
export async function readAllData(repo: Repository, input: ReadDataInput): Promise<number> {
  const { packs } = input;
  const limit = pLimit(Math.max(1, input.concurrency));
  let total = 0;
  for (let n = 0; n < packs.size; n++) if (packs.has(n, LISTED_BY_INDEX | LOCATED_BY_WAL) && input.readable(n)) total++;
  let done = 0;
  let chunks = 0;
  const verify = (sha: string, listed: readonly PackEntry[]) =>
    limit(async () => {
      const n = packs.find(sha);
      if (n === undefined || packs.has(n, VERIFIED | DAMAGED) || !input.readable(n)) return;
      try {
        chunks += await verifyPack(repo, sha, listed);
        packs.mark(n, VERIFIED);
      } catch (e) {
        if (!(e instanceof CofferError)) throw e;
        packs.mark(n, DAMAGED);
        input.record(e);
      }
      input.onProgress?.({ packsDone: ++done, packsTotal: total });
    });

  const keys = [...input.indexKeys];
  const read = new Set<string>();
  while (keys.length > 0) {
    const key = keys.shift()!;
    if (input.badIndexKeys.has(key) || read.has(key)) continue;
    read.add(key);
    let listed;
    try {
      listed = await repo.readIndexObject(key);
    } catch (e) {
      // Merged away by a running collection since it was listed: the object that replaced it lists its packs.
      if (e instanceof MissingObjectError) {
        const now = await repo.listIndexKeys();
        if (!now.includes(key)) {
          keys.push(...now.filter((k) => !read.has(k)));
          continue;
        }
      }
      if (!(e instanceof CofferError)) throw e;
      input.record(e);
      continue;
    }
    await Promise.all(listed.map((p) => verify(p.sha, p.entries)));
  }
  await forEachWalBatch(repo, input.walKeys, input.badWalKeys, input.record, async (placements) => {
    await Promise.all([...placements].map(([sha, { entries }]) => verify(sha, entries)));
  });
  return chunks;
}
