/**
 * Keep marks: a backup marked `keep` is never expired, whatever the
 * retention rules say, until the mark is taken off again. Objects are
 * immutable, so each change is a record `keep/<label>-<sha>/<seq>` (named
 * like the manifest it marks; seq: eight digits) and the highest seq holds.
 * Expire removes a backup's marks with the backup.
 *
 * Stored like WAL records: "CKP1" ‖ SHA-256 of what follows ‖ sealed JSON.
 */
import { BACKUP_PREFIX } from './keys-layout.js';
import * as z from 'zod/mini';
import { uint } from './record-schema.js';

export const KEEP_PREFIX = 'keep/';
export const KEEP_MAGIC = Buffer.from('CKP1');

export interface KeepRecord {
  format: 2;
  /** The manifest key of the backup marked. */
  backup: string;
  seq: number;
  keep: boolean;
  /** Why, for people. */
  note?: string;
  /** When it was set (ISO 8601; for people). */
  at: string;
}

export function keepKey(manifestKey: string, seq: number): string {
  return `${KEEP_PREFIX}${manifestKey.slice(BACKUP_PREFIX.length)}/${String(seq).padStart(8, '0')}`;
}

/** The manifest key and seq a `keep/` key names, or undefined for a foreign key. */
export function parseKeepKey(key: string): { backup: string; seq: number } | undefined {
  const m = /^keep\/([0-9]{8}T[0-9]{6}_[0-9]{3}Z-[0-9a-f]{64})\/(\d{8})$/.exec(key);
  return m ? { backup: `${BACKUP_PREFIX}${m[1]}`, seq: Number(m[2]) } : undefined;
}

/** What a keep mark must hold for its readers (fields of later versions pass through). */
export const keepRecordSchema: z.ZodMiniType<KeepRecord> = z.looseObject({
  format: z.literal(2),
  backup: z.string(),
  seq: uint,
  keep: z.boolean(),
  note: z.optional(z.string()),
  at: z.string(),
});
