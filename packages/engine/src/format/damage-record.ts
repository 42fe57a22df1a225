/**
 * Damage records: what `repair` found, so that writers avoid it. A record
 * `damage/<time>-<random>` lists the packs found missing (or, read in full,
 * damaged) and the backups that can therefore not be restored in full; the
 * newest record is the one that counts (a later repair that finds the damage
 * gone writes one with empty lists). Backups never take a listed backup as
 * their parent, so they store afresh what it lacks.
 *
 * Stored like catalogue summaries: "CDR1" ‖ SHA-256 of what follows ‖
 * sealed JSON. Not mirrored: it describes this copy of the repository.
 */
import * as z from 'zod/mini';

export const DAMAGE_PREFIX = 'damage/';
export const DAMAGE_MAGIC = Buffer.from('CDR1');

export interface DamageRecord {
  format: 2;
  /** When repair ran (ISO 8601). */
  at: string;
  /** Pack keys that index objects named and that were missing or damaged; their entries left the index. */
  lostPacks: string[];
  /** Manifest keys of backups some of whose chunks no index lists any more. */
  incomplete: string[];
}

/** A new record's key; names sort by time. */
export function damageKey(at: Date, random: string): string {
  return `${DAMAGE_PREFIX}${at.toISOString().replace(/[-:]/g, '').replace('.', '_')}-${random}`;
}

export function isDamageKey(key: string): boolean {
  return /^damage\/\d{8}T\d{6}_\d{3}Z-[0-9a-f]{16}$/.test(key);
}

/** What a damage record must hold for its readers (fields of later versions pass through). */
export const damageRecordSchema: z.ZodMiniType<DamageRecord> = z.looseObject({
  format: z.literal(2),
  at: z.string(),
  lostPacks: z.array(z.string()),
  incomplete: z.array(z.string()),
});
