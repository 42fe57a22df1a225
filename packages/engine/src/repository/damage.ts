/** Reading and writing damage records (format in `format/damage-record.ts`). */
import { randomBytes } from 'node:crypto';
import { asBuffer } from '../bytes.js';
import { damageKey, DAMAGE_PREFIX, isDamageKey, type DamageRecord } from '../format/damage-record.js';
import type { Repository } from './repository.js';
import { decodeDamageRecord, encodeDamageRecord } from './sealed-records.js';

/** The newest damage record, or undefined when repair never found any. */
export async function readDamage(repo: Repository): Promise<DamageRecord | undefined> {
  const keys = await repo.ownKeys(DAMAGE_PREFIX, isDamageKey);
  const newest = keys[keys.length - 1];
  return newest === undefined ? undefined : decodeDamageRecord(repo, newest, asBuffer(await repo.objects.get(newest)));
}

export async function writeDamage(repo: Repository, record: DamageRecord): Promise<string> {
  const key = damageKey(new Date(record.at), randomBytes(8).toString('hex'));
  await repo.objects.put(key, encodeDamageRecord(repo, record));
  return key;
}
