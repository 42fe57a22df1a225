/** Reading and writing verification records (format in `format/verification-record.ts`). */
import { randomBytes } from 'node:crypto';
import { CorruptObjectError } from '../errors.js';
import { parseVerificationKey, verificationKey, VERIFIED_MAGIC, VERIFIED_PREFIX, verificationRecordSchema, type VerificationRecord } from '../format/verification-record.js';
import { recordKeysByBackup } from './backup-records.js';
import type { Repository } from './repository.js';
import { openJson, sealJson } from './sealed-records.js';

export async function recordVerification(repo: Repository, record: Omit<VerificationRecord, 'format'>): Promise<string> {
  const key = verificationKey(record.backup, new Date(record.at), randomBytes(8).toString('hex'));
  await repo.objects.put(key, sealJson(repo, VERIFIED_MAGIC, 'verification', { format: 2, ...record }));
  return key;
}

/** Every `verified/` key, grouped by the backup it is about, each group oldest first. */
export function verificationKeys(repo: Repository): Promise<Map<string, string[]>> {
  return recordKeysByBackup(repo, VERIFIED_PREFIX, parseVerificationKey);
}

/** The newest verification of each backup that has one. */
export async function readVerifications(repo: Repository): Promise<Map<string, VerificationRecord>> {
  const out = new Map<string, VerificationRecord>();
  for (const [backup, keys] of await verificationKeys(repo)) {
    const key = keys[keys.length - 1]!;
    const record = openJson(repo, VERIFIED_MAGIC, 'verification', 'verification record', key, await repo.objects.get(key), verificationRecordSchema);
    if (record.backup !== backup || typeof record.ok !== 'boolean') throw new CorruptObjectError(key, `holds the verification of ${JSON.stringify(record.backup)}`);
    out.set(backup, record);
  }
  return out;
}
