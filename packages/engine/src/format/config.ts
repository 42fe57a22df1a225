/**
 * The repository `config`: written once at init, never rewritten. It holds
 * what every reader needs before it can decrypt anything — format version,
 * chunker and compression parameters, and the data keys wrapped by each key
 * provider — plus, sealed under each data key, the chunk-id key.
 *
 * Stored as JSON: `{"coffer":"repository-config","sha256":…,"body":"<json>"}`,
 * the SHA-256 covering the body text, so the config is verifiable like every
 * other object even though its name cannot carry the hash.
 */
import { sha256Hex } from '../bytes.js';
import type { ChunkerParams, FixedChunkerParams } from '../chunking/chunker.js';
import type { WrappedKey } from '../keys/key-provider.js';

/**
 * Format 2 adds stanzas (cluster identities), WAL records keyed by stanza and
 * system identifier, and manifests bound to their name and stanza. Format 1
 * repositories are read as they are (see docs/FORMAT.md, "Versions").
 */
export const FORMAT_VERSION = 2;
/**
 * Format 3 is format 2 with relation pages stored as deltas against their
 * previous versions (delta groups, CIX2 index objects, CPK3 trailers): a
 * config says 3 when the repository was made with `pageDeltas`, so that a
 * Coffer that cannot read deltas refuses it instead of failing on them.
 * Its other objects are format 2's.
 */
export const DELTA_FORMAT = 3;
export const READABLE_FORMATS: readonly number[] = [1, 2, 3];

export interface KeyRecord {
  /** Small integer written into every blob sealed under this key. */
  id: number;
  /** The same data key, wrapped by each provider that may open the repository. */
  wrappings: WrappedKey[];
  /** The repository secrets (chunk-id key), sealed under this data key, base64. */
  secrets: string;
}

export interface RepositoryConfig {
  format: number;
  repositoryId: string;
  createdAt: string;
  /** FastCDC: WAL, general files, and relation files when `relationChunker` is absent. */
  chunker: ChunkerParams & { algorithm: 'fastcdc' };
  /** PostgreSQL relation files (base/, global/, tablespaces): fixed page-aligned chunks. Absent in repositories made before it existed. */
  relationChunker?: FixedChunkerParams;
  compression: { algorithm: 'zstd'; level: number };
  /** Target size of a pack, in bytes. */
  packSize: number;
  /** Changed relation pages are stored as deltas against their previous versions, at most `depth` deltas deep (format 3). */
  pageDeltas?: { depth: number };
  keys: KeyRecord[];
  /** HMAC of a fixed text under the chunk-id key: later key records must carry the same chunk-id key. */
  idKeyCheck?: string;
}

export function encodeConfig(config: RepositoryConfig): Buffer {
  const body = JSON.stringify(config);
  return Buffer.from(JSON.stringify({ coffer: 'repository-config', sha256: sha256Hex(Buffer.from(body)), body }, null, 1) + '\n');
}

/** Parses a stored config; returns a reason string when it is not one. */
export function decodeConfig(bytes: Uint8Array): RepositoryConfig | string {
  let outer: unknown;
  try {
    outer = JSON.parse(Buffer.from(bytes).toString('utf8'));
  } catch {
    return 'config is not JSON';
  }
  if (!isRecord(outer) || outer.coffer !== 'repository-config' || typeof outer.body !== 'string' || typeof outer.sha256 !== 'string') {
    return 'config is not a Coffer repository config';
  }
  if (sha256Hex(Buffer.from(outer.body)) !== outer.sha256) return 'config body does not match its SHA-256';
  const config = JSON.parse(outer.body) as RepositoryConfig;
  return config;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null;
}
