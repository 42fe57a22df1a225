/**
 * A stanza is one PostgreSQL cluster's identity in a repository: a name with
 * a history of (system identifier, major version, WAL segment size). A
 * repository may hold several stanzas (dedup across them is a feature); their
 * WAL and backups never mix. `pg_upgrade` gives a cluster a new system
 * identifier: `stanza upgrade` appends it, so older backups stay reachable.
 *
 * Each change is a new immutable object `stanzas/<name>/<seq>` (seq: eight
 * decimal digits) holding the whole history; the highest seq is current.
 * Stored like WAL records: "CST1" ‖ SHA-256 of what follows ‖ sealed JSON.
 */
import { InvalidArgumentError } from '../errors.js';
import { carriedProblem } from './carried-sha.js';
import * as z from 'zod/mini';
import { uint } from './record-schema.js';

export const STANZA_PREFIX = 'stanzas/';
export const STANZA_MAGIC = Buffer.from('CST1');

/** What identifies the cluster a stanza holds at one point in its history. */
export interface StanzaIdentity {
  /** pg_control's system identifier, decimal. */
  systemIdentifier: string;
  /** PostgreSQL major version, when known (a segment's page magic or the server says it). */
  major?: number;
  /** WAL segment size in bytes, when known. */
  walSegmentSize?: number;
}

export interface StanzaEntry extends StanzaIdentity {
  /** When this identity was recorded (for people; no decision reads it). */
  since: string;
  reason: 'create' | 'upgrade';
}

export interface StanzaRecord {
  format: 2;
  stanza: string;
  seq: number;
  /** Oldest first; the last entry is the cluster as it is now. */
  history: StanzaEntry[];
}

/** Names: letters, digits, `_ . -`, not eight hex digits (the legacy WAL layout's timeline directories). */
const STANZA_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/;

export function validateStanzaName(name: string): string {
  if (!STANZA_NAME.test(name) || /^[0-9A-Fa-f]{8}$/.test(name)) {
    throw new InvalidArgumentError('--stanza', `${JSON.stringify(name)} is not a stanza name (letters, digits, "_", "." and "-", up to 63, not eight hex digits)`);
  }
  return name;
}

export function stanzaKey(name: string, seq: number): string {
  return `${STANZA_PREFIX}${validateStanzaName(name)}/${String(seq).padStart(8, '0')}`;
}

/** The stanza and seq a key names, or undefined for a foreign key. */
export function parseStanzaKey(key: string): { stanza: string; seq: number } | undefined {
  const m = /^stanzas\/([^/]+)\/(\d{8})$/.exec(key);
  return m ? { stanza: m[1]!, seq: Number(m[2]) } : undefined;
}

export function currentIdentity(record: StanzaRecord): StanzaEntry {
  return record.history[record.history.length - 1]!;
}

/** Why stored stanza bytes are damaged, checked without keys; undefined when intact. */
export function stanzaObjectProblem(bytes: Uint8Array): string | undefined {
  return carriedProblem(STANZA_MAGIC, bytes, 'stanza record');
}

/** What a stanza record must hold for its readers (fields of later versions pass through). */
export const stanzaRecordSchema: z.ZodMiniType<StanzaRecord> = z.looseObject({
  format: z.literal(2),
  stanza: z.string(),
  seq: uint,
  history: z
    .array(
      z.looseObject({
        systemIdentifier: z.string().check(z.regex(/^[0-9]+$/)),
        major: z.optional(uint),
        walSegmentSize: z.optional(uint),
        since: z.string(),
        reason: z.enum(['create', 'upgrade']),
      }),
    )
    .check(z.minLength(1)),
});
