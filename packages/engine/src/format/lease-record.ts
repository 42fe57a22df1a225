/**
 * Leases: who is working in a repository right now. A holder writes
 * `locks/<lease>/<seq>` records, seq 0 to take the lease and one more each
 * time it renews it, and `locks/<lease>/released` when it is done — every
 * one create-only, so a holder needs no permission to delete or overwrite
 * (append-only credentials can hold leases). Only garbage collection
 * removes `locks/` objects, once a lease has ended.
 *
 * Stored as "CLS1" ‖ SHA-256 of what follows ‖ JSON — not sealed: a lease
 * holds nothing secret, and tools without the repository's keys (mirror)
 * hold leases too. Holder, host and pid are for people (`info`); no decision reads a time
 * written in a record: whether a lease is alive is judged by whoever looks,
 * on their own clock, from when its records appear (`repository/leases.ts`).
 */
import { InvalidArgumentError } from '../errors.js';
import * as z from 'zod/mini';
import { uint } from './record-schema.js';

export const LOCKS_PREFIX = 'locks/';
export const LEASE_MAGIC = Buffer.from('CLS1');

/** Writers share; garbage collection excludes other garbage collections. */
export type LeaseMode = 'shared' | 'exclusive';

export interface LeaseRecord {
  format: 2;
  /** The lease's id (its key's middle part). */
  lease: string;
  /** 0 when taken, one more per renewal; absent in the release record. */
  seq?: number;
  released?: true;
  /** What the holder does: backup, wal-push, restore, expire, gc… */
  purpose: string;
  mode: LeaseMode;
  /** How long the lease lasts after a renewal, in milliseconds of the holder's monotonic clock. */
  ttlMs: number;
  host: string;
  pid: number;
}

const LEASE_ID = /^[a-z][a-z0-9-]{0,31}-[0-9a-f]{16}$/;
const PURPOSE = /^[a-z][a-z0-9-]{0,31}$/;

export function validatePurpose(purpose: string): string {
  if (!PURPOSE.test(purpose)) throw new InvalidArgumentError('lease purpose', `${JSON.stringify(purpose)}: lower-case letters, digits and "-", up to 32`);
  return purpose;
}

export function leaseId(purpose: string, random: string): string {
  return `${validatePurpose(purpose)}-${random}`;
}

export function leaseKey(lease: string, seq: number): string {
  return `${LOCKS_PREFIX}${lease}/${String(seq).padStart(8, '0')}`;
}

export function releaseKey(lease: string): string {
  return `${LOCKS_PREFIX}${lease}/released`;
}

/** The lease and record a `locks/` key names, or undefined for a foreign key. */
export function parseLeaseKey(key: string): { lease: string; seq: number | 'released' } | undefined {
  const m = /^locks\/([^/]+)\/(\d{8}|released)$/.exec(key);
  if (!m || !LEASE_ID.test(m[1]!)) return undefined;
  return { lease: m[1]!, seq: m[2] === 'released' ? 'released' : Number(m[2]) };
}

/** What a lease record must hold for its readers (fields of later versions pass through). */
export const leaseRecordSchema: z.ZodMiniType<LeaseRecord> = z.looseObject({
  format: z.literal(2),
  lease: z.string(),
  seq: z.optional(uint),
  released: z.optional(z.literal(true)),
  purpose: z.string(),
  mode: z.enum(['shared', 'exclusive']),
  ttlMs: z.number().check(z.positive()),
  host: z.string(),
  pid: z.int(),
});
