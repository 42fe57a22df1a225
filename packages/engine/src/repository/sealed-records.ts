/**
 * Sealed JSON records whose names cannot carry their SHA-256 (WAL records,
 * stanza records, catalogue summaries, damage records): sealed under the repository's data
 * key with an AAD naming their kind, then wrapped with the SHA-256 of the
 * sealed bytes (`format/carried-sha.ts`), so a key-less reader can check
 * them and a keyed one knows they are authentic and of the right kind.
 * Each kind's decoder then checks the record against the name it was read
 * under.
 */
import { CorruptObjectError } from '../errors.js';
import { carriedBody, carriedProblem, wrapCarried } from '../format/carried-sha.js';
import { checkRecordName, WAL_MAGIC, walRecordSchema, type WalRecord } from '../format/wal-record.js';
import { parseStanzaKey, STANZA_MAGIC, stanzaRecordSchema, type StanzaRecord } from '../format/stanza-record.js';
import { DAMAGE_MAGIC, damageRecordSchema, type DamageRecord } from '../format/damage-record.js';
import { recordProblem } from '../format/record-schema.js';
import type * as z from 'zod/mini';
import type { Repository } from './repository.js';
import type { SealedKind } from './sealed-objects.js';

export function sealJson(repo: Repository, magic: Buffer, kind: SealedKind, value: unknown): Buffer {
  return wrapCarried(magic, repo.objects.seal(kind, Buffer.from(JSON.stringify(value))));
}

/**
 * Opens a record sealed by `sealJson`: its carried SHA-256, its tag, its
 * JSON, and its shape under `schema`; `what` names the kind in errors.
 */
export function openJson<T>(repo: Repository, magic: Buffer, kind: SealedKind, what: string, key: string, bytes: Uint8Array, schema: z.ZodMiniType<T>): T {
  const problem = carriedProblem(magic, bytes, what);
  if (problem) throw new CorruptObjectError(key, problem);
  const plain = repo.objects.open(kind, key, carriedBody(bytes));
  let value: unknown;
  try {
    value = JSON.parse(plain.toString('utf8'));
  } catch (e) {
    throw new CorruptObjectError(key, `does not parse: ${(e as Error).message}`);
  }
  const wrong = recordProblem(schema, value);
  if (wrong) throw new CorruptObjectError(key, `not a well-formed ${what}: ${wrong}`);
  return value as T;
}

export function encodeWalRecord(repo: Repository, record: WalRecord): Buffer {
  return sealJson(repo, WAL_MAGIC, 'wal', record);
}

/** Opens a stored WAL record, checking its bytes, tag, and that it is the record its key names. */
export function decodeWalRecord(repo: Repository, key: string, bytes: Uint8Array): WalRecord {
  return checkRecordName(key, openJson(repo, WAL_MAGIC, 'wal', 'WAL record', key, bytes, walRecordSchema));
}

export function encodeStanzaRecord(repo: Repository, record: StanzaRecord): Buffer {
  return sealJson(repo, STANZA_MAGIC, 'stanza', record);
}

/** Opens a stored stanza record; its name and number must be those it is stored under. */
export function decodeStanzaRecord(repo: Repository, key: string, bytes: Uint8Array): StanzaRecord {
  const record = openJson(repo, STANZA_MAGIC, 'stanza', 'stanza record', key, bytes, stanzaRecordSchema);
  const named = parseStanzaKey(key);
  if (!named || record.stanza !== named.stanza || record.seq !== named.seq || !Array.isArray(record.history) || record.history.length === 0) {
    throw new CorruptObjectError(key, `holds the record of stanza ${JSON.stringify(record.stanza)} #${record.seq}`);
  }
  return record;
}

export function encodeDamageRecord(repo: Repository, record: DamageRecord): Buffer {
  return sealJson(repo, DAMAGE_MAGIC, 'damage', record);
}

export function decodeDamageRecord(repo: Repository, key: string, bytes: Uint8Array): DamageRecord {
  const record = openJson(repo, DAMAGE_MAGIC, 'damage', 'damage record', key, bytes, damageRecordSchema);
  if (!Array.isArray(record.incomplete) || !Array.isArray(record.lostPacks)) throw new CorruptObjectError(key, 'damage record without its lists');
  return record;
}
