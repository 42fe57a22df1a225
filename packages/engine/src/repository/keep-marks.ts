/** Reading and setting keep marks (format in `format/keep-record.ts`). */
import { asBuffer } from '../bytes.js';
import { CorruptObjectError, ObjectConflictError } from '../errors.js';
import { KEEP_MAGIC, KEEP_PREFIX, keepKey, keepRecordSchema, parseKeepKey, type KeepRecord } from '../format/keep-record.js';
import { recordKeysByBackup } from './backup-records.js';
import type { Repository } from './repository.js';
import { openJson, sealJson } from './sealed-records.js';

function decodeKeep(repo: Repository, key: string, bytes: Uint8Array): KeepRecord {
  const record = openJson(repo, KEEP_MAGIC, 'keep', 'keep mark', key, bytes, keepRecordSchema);
  const named = parseKeepKey(key);
  if (!named || record.backup !== named.backup || record.seq !== named.seq || typeof record.keep !== 'boolean') throw new CorruptObjectError(key, `holds the keep mark of ${JSON.stringify(record.backup)} #${record.seq}`);
  return record;
}

/** Every `keep/` key, grouped by the backup it marks, each group in seq order. */
export function keepKeys(repo: Repository): Promise<Map<string, string[]>> {
  return recordKeysByBackup(repo, KEEP_PREFIX, parseKeepKey);
}

/** The current mark of each marked backup (its newest record). */
export async function readKeepMarks(repo: Repository): Promise<Map<string, KeepRecord>> {
  const out = new Map<string, KeepRecord>();
  for (const [backup, keys] of await keepKeys(repo)) {
    const newest = keys[keys.length - 1]!;
    out.set(backup, decodeKeep(repo, newest, asBuffer(await repo.objects.get(newest))));
  }
  return out;
}

/** Sets (or, with `keep: false`, takes off) the keep mark of the backup whose manifest is `backup`. */
export async function setKeepMark(repo: Repository, backup: string, keep: boolean, note?: string): Promise<KeepRecord> {
  for (;;) {
    const keys = (await keepKeys(repo)).get(backup) ?? [];
    const seq = keys.length === 0 ? 1 : parseKeepKey(keys[keys.length - 1]!)!.seq + 1;
    const record: KeepRecord = { format: 2, backup, seq, keep, ...(note !== undefined ? { note } : {}), at: new Date().toISOString() };
    try {
      await repo.objects.put(keepKey(backup, seq), sealJson(repo, KEEP_MAGIC, 'keep', record));
      return record;
    } catch (e) {
      // Someone else set a mark with this number first: read again and follow it.
      if (!(e instanceof ObjectConflictError)) throw e;
    }
  }
}
