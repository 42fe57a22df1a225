/**
 * WAL records: one object per archived WAL file (segment, partial segment,
 * timeline history, backup history), stored as "CWL1" ‖ SHA-256 of what
 * follows ‖ sealed JSON record. The record names the file, its size and
 * SHA-256, its chunk ids in order, and where each chunk sits (records carry
 * their own chunk locations, so archiving adds no index objects and fetching
 * reads no index).
 *
 * Keys (format 2): `wal/<stanza>/<system identifier>/<timeline>/<file>`, so
 * two clusters never share a WAL name, and a cluster after pg_upgrade (a new
 * system identifier, timelines from 1 again) never meets its old WAL.
 * Format 1 repositories hold `wal/<timeline>/<file>` (no stanza): those are
 * still read, and a segment read from there is checked against the system
 * identifier in its own page header.
 */
import { CorruptObjectError, InvalidArgumentError } from '../errors.js';
import { carriedProblem } from './carried-sha.js';
import { validateStanzaName } from './stanza-record.js';
import * as z from 'zod/mini';
import { HEX_SHA256, uint } from './record-schema.js';

export const WAL_PREFIX = 'wal/';
export const WAL_MAGIC = Buffer.from('CWL1');

/** WAL file names: segments, history files, backup history files, partial segments. */
export const WAL_SEGMENT = /^[0-9A-F]{24}$/;
export const WAL_FILE = /^([0-9A-F]{8})([0-9A-F]{16}(\.partial|\.[0-9A-F]{8}\.backup)?|\.history)$/;
/**
 * A streamed partial segment: `<segment>.<length, 8 hex digits>.stream`, the
 * segment's first `length` bytes as `wal-receive` made them durable. Named by
 * its length, so each flush writes a new object (records are create-only) and
 * the longest one of a segment is what there is of it; PostgreSQL never asks
 * for these names, `wal-fetch` serves the longest when the segment is absent.
 */
export const WAL_STREAM = /^(([0-9A-F]{8})[0-9A-F]{16})\.([0-9A-F]{8})\.stream$/;

/** [pack sha, offset, length, rawLength] */
export type WalLocation = [string, number, number, number];

export interface WalRecord {
  /** 1: format 1 repositories (no stanza); 2: keyed by stanza and system identifier. */
  format: 1 | 2;
  name: string;
  stanza?: string;
  systemIdentifier?: string;
  size: number;
  sha256: string;
  chunks: string[];
  locations: Record<string, WalLocation>;
  archivedAt: string;
}

/** Which cluster's WAL: a stanza and one system identifier of its history. */
export interface WalScope {
  stanza: string;
  systemIdentifier: string;
}

export function checkWalName(name: string): string {
  const m = WAL_FILE.exec(name);
  if (!m) throw new InvalidArgumentError('WAL file name', `${JSON.stringify(name)} is not a WAL segment, history or backup history file name`);
  return m[1]!;
}

export function walKey(scope: WalScope, name: string): string {
  const stream = WAL_STREAM.exec(name);
  const tli = stream ? stream[2]! : checkWalName(name);
  if (!/^\d{1,20}$/.test(scope.systemIdentifier)) throw new InvalidArgumentError('system identifier', `${JSON.stringify(scope.systemIdentifier)} is not a decimal system identifier`);
  return `${WAL_PREFIX}${validateStanzaName(scope.stanza)}/${scope.systemIdentifier}/${tli}/${name}`;
}

/** The name of the record holding the first `length` bytes of streamed `segment`. */
export function walStreamName(segment: string, length: number): string {
  if (!WAL_SEGMENT.test(segment)) throw new InvalidArgumentError('WAL segment name', `${JSON.stringify(segment)} is not a WAL segment name`);
  if (!Number.isInteger(length) || length <= 0 || length > 0xffffffff) throw new InvalidArgumentError('streamed length', `${length} is not a partial segment's length`);
  return `${segment}.${length.toString(16).toUpperCase().padStart(8, '0')}.stream`;
}

/** The segment and length a streamed partial's name says; undefined for other names. */
export function parseWalStreamName(name: string): { segment: string; length: number } | undefined {
  const m = WAL_STREAM.exec(name);
  return m ? { segment: m[1]!, length: parseInt(m[3]!, 16) } : undefined;
}

/** Where a format 1 repository keeps `name`. */
export function legacyWalKey(name: string): string {
  return `${WAL_PREFIX}${checkWalName(name)}/${name}`;
}

/**
 * What a WAL key says: the file name, and the scope for format 2 keys.
 * Streamed partials (format 2 only) parse too: their names match neither
 * `WAL_SEGMENT` nor `WAL_FILE`, so readers that look for segments pass them by.
 */
export function parseWalKey(key: string): { name: string; scope?: WalScope } | undefined {
  const parts = key.split('/');
  if (parts[0] !== 'wal') return undefined;
  const name = parts[parts.length - 1]!;
  const stream = WAL_STREAM.exec(name);
  const m = stream ? [name, stream[2]!] : WAL_FILE.exec(name);
  if (!m) return undefined;
  if (parts.length === 3 && parts[1] === m[1] && !stream) return { name };
  if (parts.length === 5 && parts[3] === m[1] && /^\d{1,20}$/.test(parts[2]!)) return { name, scope: { stanza: parts[1]!, systemIdentifier: parts[2]! } };
  return undefined;
}

/** Why stored WAL bytes are damaged, checked without keys; undefined when intact. */
export function walObjectProblem(bytes: Uint8Array): string | undefined {
  return carriedProblem(WAL_MAGIC, bytes, 'WAL record');
}

/** Checks an opened record against the key it was read from. */
export function checkRecordName(key: string, record: WalRecord): WalRecord {
  const named = parseWalKey(key);
  if (!named) throw new CorruptObjectError(key, 'not a WAL record key');
  const scope = named.scope;
  const same = record.name === named.name && (scope ? record.stanza === scope.stanza && record.systemIdentifier === scope.systemIdentifier : record.stanza === undefined);
  if (!same) throw new CorruptObjectError(key, `holds the record of ${record.stanza ? `${record.stanza}/${record.systemIdentifier}/` : ''}${record.name}`);
  return record;
}

/** What a WAL record must hold for its readers (fields of later versions pass through). */
export const walRecordSchema: z.ZodMiniType<WalRecord> = z.looseObject({
  format: z.union([z.literal(1), z.literal(2)]),
  name: z.string(),
  stanza: z.optional(z.string()),
  systemIdentifier: z.optional(z.string()),
  size: uint,
  sha256: HEX_SHA256,
  chunks: z.array(HEX_SHA256),
  locations: z.record(z.string(), z.tuple([HEX_SHA256, uint, uint, uint])),
  archivedAt: z.string(),
});
