/**
 * What a garbage collection is about to delete: `condemned/<gc lease>`, the
 * packs it found unreferenced (or whose live chunks it copied elsewhere).
 * Written before it looks at who is working; a writer reads these records
 * after it has taken its lease and stores again any chunk it finds only in a
 * condemned pack, so nothing it commits can depend on a pack the collection
 * deletes (docs/FORMAT.md, "Garbage collection"). The collection removes its
 * record when it is done; one left by a collection that died is removed by
 * the next.
 *
 * Stored like WAL records: "CGC1" ‖ SHA-256 of what follows ‖ sealed JSON.
 */
import * as z from 'zod/mini';
import { HEX_SHA256 } from './record-schema.js';
export const CONDEMNED_PREFIX = 'condemned/';
export const CONDEMNED_MAGIC = Buffer.from('CGC1');

export interface CondemnedRecord {
  format: 2;
  /** The collection's lease. */
  gc: string;
  /** Pack SHA-256s (hex). */
  packs: string[];
}

export function condemnedKey(gcLease: string): string {
  return `${CONDEMNED_PREFIX}${gcLease}`;
}

export function isCondemnedKey(key: string): boolean {
  return /^condemned\/gc-[0-9a-f]{16}$/.test(key);
}

/** What a condemnation record must hold for its readers (fields of later versions pass through). */
export const condemnedRecordSchema: z.ZodMiniType<CondemnedRecord> = z.looseObject({
  format: z.literal(2),
  gc: z.string(),
  packs: z.array(HEX_SHA256),
});
