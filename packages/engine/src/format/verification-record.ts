/**
 * Verification records: a backup was restored and checked, and passed or
 * failed. `verified/<label>-<sha>/<time>-<random>` (named like the manifest
 * it is about; times sort); the newest record of a backup is what counts.
 * Retention never expires the newest backup of a lineage whose newest
 * record passed. Not mirrored: it describes this copy of the repository.
 *
 * Stored like WAL records: "CVR1" ‖ SHA-256 of what follows ‖ sealed JSON.
 */
import { BACKUP_PREFIX } from './keys-layout.js';
import * as z from 'zod/mini';

export const VERIFIED_PREFIX = 'verified/';
export const VERIFIED_MAGIC = Buffer.from('CVR1');

export interface VerificationRecord {
  format: 2;
  /** The manifest key of the backup verified. */
  backup: string;
  /** When the verification finished (ISO 8601; for people and ordering by name). */
  at: string;
  ok: boolean;
  /** What was done, e.g. `restore`, `chunk-ids`. */
  checks: string[];
  /** Problems found, when it failed. */
  problems?: string[];
}

export function verificationKey(manifestKey: string, at: Date, random: string): string {
  return `${VERIFIED_PREFIX}${manifestKey.slice(BACKUP_PREFIX.length)}/${at.toISOString().replace(/[-:]/g, '').replace('.', '_')}-${random}`;
}

/** The manifest key a `verified/` key names, or undefined for a foreign key. */
export function parseVerificationKey(key: string): { backup: string } | undefined {
  const m = /^verified\/([0-9]{8}T[0-9]{6}_[0-9]{3}Z-[0-9a-f]{64})\/[0-9]{8}T[0-9]{6}_[0-9]{3}Z-[0-9a-f]{16}$/.exec(key);
  return m ? { backup: `${BACKUP_PREFIX}${m[1]}` } : undefined;
}

/** What a verification record must hold for its readers (fields of later versions pass through). */
export const verificationRecordSchema: z.ZodMiniType<VerificationRecord> = z.looseObject({
  format: z.literal(2),
  backup: z.string(),
  at: z.string(),
  ok: z.boolean(),
  checks: z.array(z.string()),
  problems: z.optional(z.array(z.string())),
});
