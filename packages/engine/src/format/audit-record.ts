/**
 * The audit trail: who did what to the repository, when, and how it ended.
 * Each process that writes, deletes or reads data keeps a chain of its own:
 * `audit/<start time>-<chain id>/<seq>`, records numbered from 0, each
 * carrying the SHA-256 of the previous record's stored bytes, and the first
 * one the key and SHA-256 of the newest record of another chain it saw. A
 * backup's manifest names the record that tells of it. So a record deleted,
 * edited or never written shows: a number missing in a chain, a hash that
 * does not match, a record another names that is not there.
 *
 * Stored like the other sealed records: "CAD1" ‖ SHA-256 of what follows ‖
 * sealed JSON (authentic under the repository's key); create-only, never
 * rewritten. Mirrored with everything else.
 */
import * as z from 'zod/mini';
import { HEX_SHA256, uint } from './record-schema.js';

export const AUDIT_PREFIX = 'audit/';
export const AUDIT_MAGIC = Buffer.from('CAD1');

export type AuditValue = string | number | boolean | string[];

export interface AuditRecord {
  format: 1;
  chain: string;
  seq: number;
  /** SHA-256 (hex) of the previous record of this chain, as stored; null for the first. */
  prev: string | null;
  /** The newest record of another chain this one saw when it began (absent where listing was not worth it: WAL pushes). */
  seen?: { key: string; sha256: string };
  at: string;
  host: string;
  user: string;
  /** The command, e.g. `backup`, `key rotate`, `wal-push`. */
  command: string;
  result: 'ok' | 'failed';
  exitStatus: number;
  /** What was done: backup ids, segment names, counts (never a secret). */
  details: Record<string, AuditValue>;
  error?: string;
}

/** `audit/20261130T101500_123Z-<16 hex>/000007` */
export function auditKey(chain: string, seq: number): string {
  return `${AUDIT_PREFIX}${chain}/${String(seq).padStart(6, '0')}`;
}

export function newChainId(at: Date, random: string): string {
  return `${at.toISOString().replace(/[-:]/g, '').replace('.', '_')}-${random}`;
}

export function parseAuditKey(key: string): { chain: string; seq: number } | undefined {
  const m = /^audit\/([0-9]{8}T[0-9]{6}_[0-9]{3}Z-[0-9a-f]{16})\/([0-9]{6})$/.exec(key);
  return m ? { chain: m[1]!, seq: Number(m[2]) } : undefined;
}

const value = z.union([z.string(), z.number(), z.boolean(), z.array(z.string())]);

export const auditRecordSchema: z.ZodMiniType<AuditRecord> = z.looseObject({
  format: z.literal(1),
  chain: z.string(),
  seq: uint,
  prev: z.nullable(HEX_SHA256),
  seen: z.optional(z.looseObject({ key: z.string(), sha256: HEX_SHA256 })),
  at: z.string(),
  host: z.string(),
  user: z.string(),
  command: z.string(),
  result: z.enum(['ok', 'failed']),
  exitStatus: z.int(),
  details: z.record(z.string(), value),
  error: z.optional(z.string()),
});
