/** Reading and writing condemnation records (format in `format/condemned-record.ts`). */
import { asBuffer } from '../bytes.js';
import { CorruptObjectError } from '../errors.js';
import { condemnedKey, CONDEMNED_MAGIC, CONDEMNED_PREFIX, isCondemnedKey, condemnedRecordSchema, type CondemnedRecord } from '../format/condemned-record.js';
import type { Repository } from './repository.js';
import { openJson, sealJson } from './sealed-records.js';

export async function writeCondemned(repo: Repository, gcLease: string, packs: readonly string[]): Promise<string> {
  const key = condemnedKey(gcLease);
  const record: CondemnedRecord = { format: 2, gc: gcLease, packs: [...packs] };
  await repo.objects.put(key, sealJson(repo, CONDEMNED_MAGIC, 'condemned', record));
  return key;
}

/** Every condemnation record in the store, by key. */
export async function readCondemnedRecords(repo: Repository): Promise<Map<string, CondemnedRecord>> {
  const out = new Map<string, CondemnedRecord>();
  for (const key of await repo.ownKeys(CONDEMNED_PREFIX, isCondemnedKey)) {
    // Gone between the listing and the read: its collection finished.
    const bytes = await repo.objects.getIfPresent(key);
    if (!bytes) continue;
    const record = openJson(repo, CONDEMNED_MAGIC, 'condemned', 'condemnation record', key, asBuffer(bytes), condemnedRecordSchema);
    if (record.gc !== key.slice(CONDEMNED_PREFIX.length) || !Array.isArray(record.packs)) throw new CorruptObjectError(key, 'condemnation record of another collection');
    out.set(key, record);
  }
  return out;
}

/** The packs some running (or dead) collection condemned: a writer must not reference a chunk found only there. */
export async function condemnedPacks(repo: Repository): Promise<Set<string>> {
  const packs = new Set<string>();
  for (const record of (await readCondemnedRecords(repo)).values()) for (const p of record.packs) packs.add(p);
  return packs;
}
