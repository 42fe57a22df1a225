/**
 * Where each kind of object lives in the store. Every object but `config` is
 * named by the SHA-256 of its stored bytes, so anyone can verify it without
 * keys; packs are fanned out by their first byte to keep directories small.
 */
import { SHA256_HEX } from '../bytes.js';

export const CONFIG_KEY = 'config';
export const PACK_PREFIX = 'data/';
export const INDEX_PREFIX = 'index/';
export const BACKUP_PREFIX = 'backups/';
/** Key records added after init (other providers' wrappings, rotated data keys). */
export const KEYS_PREFIX = 'keys/';

export function packKey(sha: string): string {
  return `${PACK_PREFIX}${sha.slice(0, 2)}/${sha}`;
}

/** Index objects listing relation pages (which a backup compares with its parent, not with the whole index) carry a name prefix. */
export const PAGE_INDEX_NAME = 'pages-';

export function indexKey(sha: string, pages = false): string {
  return `${INDEX_PREFIX}${pages ? PAGE_INDEX_NAME : ''}${sha}`;
}

export function isPageIndexKey(key: string): boolean {
  return key.startsWith(`${INDEX_PREFIX}${PAGE_INDEX_NAME}`);
}

export function keyRecordsKey(sha: string): string {
  return `${KEYS_PREFIX}${sha}`;
}

export function backupKey(label: string, sha: string): string {
  return `${BACKUP_PREFIX}${label}-${sha}`;
}

/** The SHA-256 an object's key promises, or `undefined` for keys that carry none. */
export function expectedSha(key: string): string | undefined {
  const last = key.slice(key.lastIndexOf('/') + 1);
  const sha = last.slice(-64);
  return SHA256_HEX.test(sha) && (last.length === 64 || last[last.length - 65] === '-') ? sha : undefined;
}

/**
 * Objects whose loss loses data, which Object Lock protects: the config, key
 * records, packs, index objects, manifests, catalogue summaries, stanza and
 * WAL records. Not leases, condemnation, keep, verification or damage
 * records: Coffer removes those in its normal course, and a lock on them
 * would stop it (a lease that cannot be removed blocks nothing, but piles up).
 */
export function isLockable(key: string): boolean {
  return key === CONFIG_KEY || LOCKABLE_PREFIXES.some((p) => key.startsWith(p));
}

/** Prefixes of the lockable objects (`config` aside). */
export const LOCKABLE_PREFIXES: readonly string[] = [PACK_PREFIX, INDEX_PREFIX, BACKUP_PREFIX, 'catalogue/', KEYS_PREFIX, 'stanzas/', 'wal/'];

/** A sortable label for a backup: its start time in UTC, to the millisecond. */
export function backupLabel(at: Date): string {
  return at.toISOString().replace(/[-:]/g, '').replace('.', '_');
}

/** `backups/<label>-<sha256>` with a label as `backupLabel` makes it (and as tests craft it): date, time, milliseconds. */
const BACKUP_KEY = /^backups\/[0-9]{8}T[0-9]{6}_[0-9]{3}Z-[0-9a-f]{64}$/;

export function isBackupKey(key: string): boolean {
  return BACKUP_KEY.test(key);
}

export function isIndexKey(key: string): boolean {
  return /^index\/(pages-)?[0-9a-f]{64}$/.test(key);
}
