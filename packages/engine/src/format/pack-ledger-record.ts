/**
 * The pack ledger: which packs a verification read whole and proved, and
 * when. Each run that reads packs writes one object, `ledger/<time>-<random>`,
 * naming the packs it proved; the ledger is all of them merged, the newest
 * time per pack winning. A run that finds many objects writes one merged
 * object and deletes those it merged. Not mirrored: it describes the bytes of
 * this copy of the repository.
 *
 * Stored like verification records: "CPL1" ‖ SHA-256 of what follows ‖
 * sealed JSON, so a forged or edited ledger cannot make a pack look proved.
 */
import * as z from 'zod/mini';
import { HEX_SHA256, uint } from './record-schema.js';

export const LEDGER_PREFIX = 'ledger/';
export const LEDGER_MAGIC = Buffer.from('CPL1');

export interface PackLedgerRecord {
  format: 2;
  /** When the run that wrote it finished (ISO 8601). */
  at: string;
  /** Pack SHA-256 (hex) → when it was proved, in seconds since the epoch. */
  packs: Record<string, number>;
}

export function ledgerKey(at: Date, random: string): string {
  return `${LEDGER_PREFIX}${at.toISOString().replace(/[-:]/g, '').replace('.', '_')}-${random}`;
}

export function isLedgerKey(key: string): boolean {
  return /^ledger\/[0-9]{8}T[0-9]{6}_[0-9]{3}Z-[0-9a-f]{16}$/.test(key);
}

export const packLedgerSchema: z.ZodMiniType<PackLedgerRecord> = z.looseObject({
  format: z.literal(2),
  at: z.string(),
  packs: z.record(HEX_SHA256, uint),
});
