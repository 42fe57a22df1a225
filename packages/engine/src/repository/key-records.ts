/**
 * Key records: which data keys a repository has and who may unwrap them.
 *
 * `config` is written once, so keys added later live in immutable `keys/`
 * objects, each named by its SHA-256 like every other object (a mirror copies
 * them as it copies packs). An object adds key records: new wrappings of
 * existing data keys (`key add`: another region's KMS key), or a new data key
 * for new writes (`key rotate`; old keys stay for reading, nothing is
 * rewritten). Opening merges the config's records with every `keys/` object.
 *
 * Trust: a key object is authenticated with an HMAC under a key derived from
 * the repository's chunk-id key, which only holders of a data key can learn,
 * and the chunk-id key itself must match the commitment in `config`
 * (`idKeyCheck`). So a writer without keys cannot slip a data key of its own
 * choosing into the repository for later writes to use. A wrapping of an
 * existing key id is accepted only if the key it unwraps opens that id's
 * sealed secrets, i.e. it is the same data key.
 *
 * Removal (`key remove`): a `revoke` object names wrappings (provider, key
 * and the wrapped bytes) that no longer open the repository; opening passes
 * over them, and `key rotate` then wraps the new data key without them.
 * Objects are immutable, so the wrapped bytes stay where they were: whoever
 * holds the removed key and can read the store still unwraps the data keys
 * of that time. Removal protects what is written after a rotation; a data
 * key that may be known needs a re-encrypting copy (`mirror --reencrypt`).
 */
import { createHash, createHmac, hkdfSync, timingSafeEqual } from 'node:crypto';
import { sha256Hex } from '../bytes.js';
import { open as openBox, seal } from '../crypto/aead.js';
import { CorruptObjectError } from '../errors.js';
import type { KeyRecord } from '../format/config.js';
import type { WrappedKey } from '../keys/key-provider.js';
import { keyRecordsKey } from '../format/keys-layout.js';

export interface KeyRecordsBody {
  repositoryId: string;
  createdAt: string;
  /**
   * Why the records were added: `wrap` (another provider for existing keys),
   * `rotate` (a new data key), or `config` (the authenticated copy of the
   * config, written at init, from which a lost config is rebuilt).
   */
  reason: 'wrap' | 'rotate' | 'config' | 'revoke';
  records: KeyRecord[];
  /** With `revoke`: wrappings that no longer open the repository. */
  revoked?: RevokedWrapping[];
  /** With `config`: the config as stored (its encoded bytes, as text). */
  config?: string;
}

/** A wrapping taken off (`key remove`), named exactly: two key files share provider and name, not wrapped bytes. */
export interface RevokedWrapping {
  provider: string;
  keyRef: string;
  ciphertext: string;
}

/** The wrappings of `records` that `revoked` does not name. */
export function withoutRevoked(records: readonly KeyRecord[], revoked: readonly RevokedWrapping[]): KeyRecord[] {
  if (revoked.length === 0) return [...records];
  const gone = (w: WrappedKey) => revoked.some((r) => r.provider === w.provider && r.keyRef === w.keyRef && r.ciphertext === w.ciphertext);
  return records.map((r) => ({ ...r, wrappings: r.wrappings.filter((w) => !gone(w)) }));
}

function macKey(idKey: Uint8Array): Buffer {
  return Buffer.from(hkdfSync('sha256', idKey, Buffer.alloc(0), 'coffer key records', 32));
}

/** What `config` stores to commit to the chunk-id key without revealing it. */
export function idKeyCheck(idKey: Uint8Array): string {
  return createHmac('sha256', idKey).update('coffer id-key check').digest('hex');
}

export function encodeKeyRecords(body: KeyRecordsBody, idKey: Uint8Array): Buffer {
  const text = JSON.stringify(body);
  const mac = createHmac('sha256', macKey(idKey)).update(text).digest('hex');
  return Buffer.from(JSON.stringify({ coffer: 'key-records', mac, body: text }, null, 1) + '\n');
}

export interface StoredKeyRecords {
  key: string;
  body: KeyRecordsBody;
  /** Checks the object's HMAC once the chunk-id key is known. */
  authentic(idKey: Uint8Array): boolean;
}

/** Reads a key-records object; with `repositoryId`, one of another repository is refused. */
export function decodeKeyRecords(key: string, bytes: Uint8Array, repositoryId?: string): StoredKeyRecords {
  let outer: { coffer?: unknown; mac?: unknown; body?: unknown };
  let body: KeyRecordsBody;
  try {
    outer = JSON.parse(Buffer.from(bytes).toString('utf8')) as typeof outer;
    if (outer.coffer !== 'key-records' || typeof outer.mac !== 'string' || typeof outer.body !== 'string') throw new Error('not a key-records object');
    body = JSON.parse(outer.body) as KeyRecordsBody;
  } catch (e) {
    throw new CorruptObjectError(key, `key records do not parse: ${(e as Error).message}`);
  }
  if (repositoryId !== undefined && body.repositoryId !== repositoryId) throw new CorruptObjectError(key, `key records belong to repository ${body.repositoryId}`);
  const text = outer.body;
  const mac = Buffer.from(outer.mac, 'hex');
  return {
    key,
    body,
    authentic: (idKey) => {
      const expected = createHmac('sha256', macKey(idKey)).update(text).digest();
      return mac.length === expected.length && timingSafeEqual(mac, expected);
    },
  };
}

/** The config's records plus those of key objects, one per key id, wrappings united (config first). */
export function mergeKeyRecords(base: readonly KeyRecord[], added: readonly KeyRecord[]): KeyRecord[] {
  const byId = new Map<number, KeyRecord>();
  for (const r of [...base, ...added]) {
    const have = byId.get(r.id);
    if (!have) byId.set(r.id, { ...r, wrappings: [...r.wrappings] });
    else for (const w of r.wrappings) if (!have.wrappings.some((h) => h.provider === w.provider && h.keyRef === w.keyRef && h.ciphertext === w.ciphertext)) have.wrappings.push(w);
  }
  return [...byId.values()].sort((a, b) => a.id - b.id);
}

function secretsAad(repositoryId: string, keyId: number): Buffer {
  return createHash('sha256').update(`coffer secrets\0${repositoryId}\0${keyId}`).digest();
}

/** The repository secrets (chunk-id key), sealed under one data key. */
export function sealSecrets(dataKey: Uint8Array, repositoryId: string, keyId: number, idKey: Uint8Array): string {
  return seal(dataKey, Buffer.from(JSON.stringify({ idKey: Buffer.from(idKey).toString('base64') })), secretsAad(repositoryId, keyId)).toString('base64');
}

export function openSecrets(dataKey: Uint8Array, repositoryId: string, keyId: number, sealed: string): Uint8Array | undefined {
  const plain = openBox(dataKey, Buffer.from(sealed, 'base64'), secretsAad(repositoryId, keyId));
  if (!plain) return undefined;
  return Buffer.from((JSON.parse(plain.toString('utf8')) as { idKey: string }).idKey, 'base64');
}

export function keyRecordsObject(body: KeyRecordsBody, idKey: Uint8Array): { key: string; bytes: Buffer } {
  const bytes = encodeKeyRecords(body, idKey);
  return { key: keyRecordsKey(sha256Hex(bytes)), bytes };
}
