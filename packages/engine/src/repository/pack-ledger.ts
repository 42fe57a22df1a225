/** Reading and writing the pack ledger (format in `format/pack-ledger-record.ts`). */
import { randomBytes } from 'node:crypto';
import { CofferError } from '../errors.js';
import { isLedgerKey, LEDGER_MAGIC, LEDGER_PREFIX, ledgerKey, packLedgerSchema } from '../format/pack-ledger-record.js';
import type { Repository } from './repository.js';
import { openJson, sealJson } from './sealed-records.js';

/** Merged objects past this many are folded into one by the next write. */
const FOLD_AFTER = 32;

export interface PackLedger {
  /** Pack SHA-256 → when it was last proved (seconds since the epoch). */
  proved: Map<string, number>;
  /** The objects read (oldest first). */
  keys: string[];
}

export async function readPackLedger(repo: Repository): Promise<PackLedger> {
  const keys = (await repo.objects.list(LEDGER_PREFIX)).map((o) => o.key).filter((k) => {
    if (isLedgerKey(k)) return true;
    repo.onWarning(`ignored ${k}: not a name Coffer writes`);
    return false;
  });
  keys.sort();
  const proved = new Map<string, number>();
  for (const key of keys) {
    const record = openJson(repo, LEDGER_MAGIC, 'pack-ledger', 'pack ledger', key, await repo.objects.get(key), packLedgerSchema);
    for (const [sha, at] of Object.entries(record.packs)) if ((proved.get(sha) ?? -1) < at) proved.set(sha, at);
  }
  return { proved, keys };
}

/**
 * Adds `packs` (proved at `at`) to the ledger read as `before`. With many
 * objects already, writes everything still in `live` as one object and
 * deletes the objects it replaces (a store that refuses deletes keeps them:
 * they only repeat what the new object says). Returns the key written.
 */
export async function writePackLedger(repo: Repository, before: PackLedger, packs: Iterable<string>, at: Date, live: ReadonlySet<string>): Promise<string> {
  const seconds = Math.floor(at.getTime() / 1000);
  const fold = before.keys.length >= FOLD_AFTER;
  const entries: Record<string, number> = {};
  if (fold) for (const [sha, t] of before.proved) if (live.has(sha)) entries[sha] = t;
  for (const sha of packs) entries[sha] = seconds;
  const key = ledgerKey(at, randomBytes(8).toString('hex'));
  await repo.objects.put(key, sealJson(repo, LEDGER_MAGIC, 'pack-ledger', { format: 2, at: at.toISOString(), packs: entries }));
  if (fold) {
    for (const old of before.keys) {
      await repo.objects.delete(old).catch((e: unknown) => {
        if (!(e instanceof CofferError)) throw e;
      });
    }
  }
  return key;
}
