/**
 * Mirroring: copy a repository's immutable objects to another store (another
 * region, another provider), needing no keys.
 *
 * Every object the destination lacks is read, checked against the SHA-256 it
 * is named by (or carries, for `wal/` records and `config`), and written
 * create-only. Order keeps the destination consistent if a run stops part
 * way: packs, then indexes, then key records, stanzas, manifests and WAL
 * records — an object is written only after everything it can reference —
 * listed the other way round (see LIST_ORDER) — and `config`
 * last, so an interrupted first mirror is not yet a repository. A corrupt
 * source object is reported and not copied; the run goes on with the rest and
 * then fails. Runs are resumable: a second run lists the destination and
 * copies nothing that is already there.
 *
 * Memory: one listing per top-level prefix (about 100 bytes per object) and
 * at most `concurrency` objects in flight.
 */
import pLimit from 'p-limit';
import { asBuffer, sha256Hex } from '../bytes.js';
import { CofferError, CorruptObjectError, MissingObjectError, NotARepositoryError, ObjectConflictError, PermissionDeniedError, RepositoryBusyError, StoreAccessDeniedError } from '../errors.js';
import { AUDIT_MAGIC, AUDIT_PREFIX } from '../format/audit-record.js';
import { CONDEMNED_PREFIX } from '../format/condemned-record.js';
import { carriedProblem } from '../format/carried-sha.js';
import { KEEP_MAGIC, KEEP_PREFIX } from '../format/keep-record.js';
import { Lease, type LeaseHome } from '../repository/leases.js';
import { decodeConfig } from '../format/config.js';
import { BACKUP_PREFIX, CONFIG_KEY, expectedSha, INDEX_PREFIX, KEYS_PREFIX, PACK_PREFIX } from '../format/keys-layout.js';
import { CATALOGUE_PREFIX } from '../format/catalogue-record.js';
import { STANZA_PREFIX, stanzaObjectProblem } from '../format/stanza-record.js';
import { catalogueObjectProblem } from '../repository/catalogue.js';
import { WAL_PREFIX, walObjectProblem } from '../format/wal-record.js';
import type { ObjectInfo, ObjectStore } from '../store/object-store.js';

/** Copy order: what may be referenced comes before what references it. */
export const MIRROR_ORDER = [PACK_PREFIX, INDEX_PREFIX, KEYS_PREFIX, STANZA_PREFIX, BACKUP_PREFIX, CATALOGUE_PREFIX, KEEP_PREFIX, WAL_PREFIX, AUDIT_PREFIX] as const;

/**
 * Listing order: the reverse. Writers put packs before the index, manifest or
 * WAL record that names them, so metadata listed first only names packs that
 * already exist when data is listed: the copy is a consistent snapshot even
 * while backups and wal-push run. (Listed the other way, a backup finishing
 * between the two listings would reach the destination without its packs.)
 */
const LIST_ORDER = [...MIRROR_ORDER].reverse();

export interface MirrorOptions {
  /** Objects in flight at once (default: the smaller of the two stores' connections, at most 16). */
  concurrency?: number;
  onProgress?: (p: MirrorProgress) => void;
  /** Time-to-live of the leases the copy holds on both sides (default 60 s). */
  leaseTtlMs?: number;
}

export interface MirrorProgress {
  prefix: string;
  copied: number;
  bytesCopied: number;
  toCopy: number;
}

export interface MirrorReport {
  ok: boolean;
  /** Objects written to the destination in this run. */
  copied: number;
  bytesCopied: number;
  /** Objects the destination already held. */
  present: number;
  /** Copied objects per prefix (`data/`, `index/`, …, `config`). */
  copiedByPrefix: Record<string, number>;
  /** Objects not copied, each with why: corrupt at the source, or other bytes already at the destination. */
  problems: CofferError[];
}

/** Why `bytes` stored under `key` are not intact, checked without keys; undefined when they are. */
export function storedObjectProblem(key: string, bytes: Uint8Array): string | undefined {
  if (key === CONFIG_KEY) {
    const config = decodeConfig(bytes);
    return typeof config === 'string' ? config : undefined;
  }
  if (key.startsWith(WAL_PREFIX)) return walObjectProblem(bytes);
  if (key.startsWith(STANZA_PREFIX)) return stanzaObjectProblem(bytes);
  if (key.startsWith(CATALOGUE_PREFIX)) return catalogueObjectProblem(bytes);
  if (key.startsWith(KEEP_PREFIX)) return carriedProblem(KEEP_MAGIC, bytes, 'keep mark');
  if (key.startsWith(AUDIT_PREFIX)) return carriedProblem(AUDIT_MAGIC, bytes, 'audit record');
  const sha = expectedSha(key);
  if (!sha) return 'its name carries no SHA-256';
  return sha256Hex(bytes) === sha ? undefined : 'SHA-256 of its bytes does not match its name';
}

export async function mirror(from: ObjectStore, to: ObjectStore, options: MirrorOptions = {}): Promise<MirrorReport> {
  const sourceConfig = await checkMirrorPair(from, to);
  return withMirrorLeases(from, to, options.leaseTtlMs, () => copyAll(from, to, sourceConfig, options));
}

/** The source's config, once the source is a repository and the destination is empty or a copy of the same one. */
export async function checkMirrorPair(from: Pick<ObjectStore, 'get' | 'properties'>, to: ObjectStore): Promise<Uint8Array> {
  const source = from.properties.location;
  let sourceConfig: Uint8Array;
  try {
    sourceConfig = await from.get(CONFIG_KEY);
  } catch (e) {
    if (e instanceof MissingObjectError) throw new NotARepositoryError(source);
    throw e;
  }
  const problem = storedObjectProblem(CONFIG_KEY, sourceConfig);
  if (problem) throw new NotARepositoryError(source, problem);
  if (await to.head(CONFIG_KEY)) {
    const theirs = asBuffer(await to.get(CONFIG_KEY));
    if (!theirs.equals(asBuffer(sourceConfig))) throw new ObjectConflictError(CONFIG_KEY, `${to.properties.location} holds another repository (or another copy of its config); nothing was copied`);
  }
  return sourceConfig;
}

/**
 * Runs a copy under leases on both sides: a garbage collection on the source
 * waits before deleting packs the copy may read (best effort: read-only
 * credentials cannot hold one), and one on the destination waits for the
 * packs copied to be named by the metadata that follows them. A collection
 * already running on the destination may delete a pack the copy finds
 * present there: the copy refuses to start.
 */
export async function withMirrorLeases<T>(from: LeaseHome, to: ObjectStore, ttlMs: number | undefined, work: () => Promise<T>): Promise<T> {
  const options = { purpose: 'mirror', ...(ttlMs !== undefined ? { ttlMs } : {}) };
  const sourceLease = await Lease.acquire(from, options).catch((e: unknown) => {
    if (e instanceof StoreAccessDeniedError || e instanceof PermissionDeniedError) return undefined;
    throw e;
  });
  try {
    const targetLease = await Lease.acquire(to, options);
    try {
      for await (const o of to.list(CONDEMNED_PREFIX)) throw new RepositoryBusyError(`a garbage collection is running on ${to.properties.location} (${o.key}); mirror again when it has finished`);
      return await work();
    } finally {
      await targetLease.release();
    }
  } finally {
    await sourceLease?.release();
  }
}

export function emptyMirrorReport(): MirrorReport {
  return { ok: true, copied: 0, bytesCopied: 0, present: 0, copiedByPrefix: {}, problems: [] };
}

/**
 * Copies one object, checked without keys, create-only; counts it in
 * `report`. A source object gone meanwhile (garbage collection) is passed
 * over; a corrupt one, or other bytes at the destination, is a problem.
 */
export async function copyObject(from: Pick<ObjectStore, 'get' | 'properties'>, to: ObjectStore, key: string, prefix: string, report: MirrorReport): Promise<number> {
  let bytes: Uint8Array;
  try {
    bytes = await from.get(key);
  } catch (e) {
    if (e instanceof MissingObjectError) return 0;
    throw e;
  }
  const damage = storedObjectProblem(key, bytes);
  if (damage) {
    report.problems.push(new CorruptObjectError(key, `${damage} at ${from.properties.location}; not copied`));
    return 0;
  }
  try {
    if ((await to.put(key, bytes)) === 'existed') {
      report.present++;
      return 0;
    }
  } catch (e) {
    if (e instanceof ObjectConflictError) {
      report.problems.push(new ObjectConflictError(key, `${to.properties.location} holds other bytes under this name; left as it is`));
      return 0;
    }
    throw e;
  }
  report.copied++;
  report.bytesCopied += bytes.length;
  report.copiedByPrefix[prefix] = (report.copiedByPrefix[prefix] ?? 0) + 1;
  return bytes.length;
}

async function copyAll(from: ObjectStore, to: ObjectStore, sourceConfig: Uint8Array, options: MirrorOptions): Promise<MirrorReport> {
  const report = emptyMirrorReport();
  const concurrency = options.concurrency ?? Math.max(1, Math.min(16, from.properties.connections, to.properties.connections));
  const limit = pLimit(concurrency);

  const copy = async (info: ObjectInfo, prefix: string, progress: MirrorProgress): Promise<void> => {
    const bytes = await copyObject(from, to, info.key, prefix, report);
    if (bytes === 0) return;
    progress.copied++;
    progress.bytesCopied += bytes;
    options.onProgress?.({ ...progress });
  };

  const diff = await diffStores(from, to);
  const missingByPrefix = diff.missing;
  report.present += diff.present;
  report.problems.push(...diff.conflicts);
  for (const prefix of MIRROR_ORDER) {
    const missing = missingByPrefix.get(prefix)!;
    const progress: MirrorProgress = { prefix, copied: 0, bytesCopied: 0, toCopy: missing.length };
    // Within a prefix objects are independent; the next prefix starts only when all of these are durable.
    await Promise.all(missing.map((o) => limit(() => copy(o, prefix, progress))));
  }

  await finishMirror(to, sourceConfig, report);
  return report;
}

/** What the destination lacks, by prefix, listed in LIST_ORDER (a consistent snapshot while writers run). */
async function diffStores(from: ObjectStore, to: ObjectStore): Promise<{ missing: Map<string, ObjectInfo[]>; present: number; conflicts: ObjectConflictError[] }> {
  const out = { missing: new Map<string, ObjectInfo[]>(), present: 0, conflicts: [] as ObjectConflictError[] };
  for (const prefix of LIST_ORDER) {
    const have = new Map<string, number>();
    for await (const o of to.list(prefix)) have.set(o.key, o.size);
    const missing: ObjectInfo[] = [];
    for await (const o of from.list(prefix)) {
      const size = have.get(o.key);
      if (size === undefined) missing.push(o);
      else if (size === o.size) out.present++;
      else out.conflicts.push(new ObjectConflictError(o.key, `${to.properties.location} holds ${size} bytes under this name, the source ${o.size}; left as it is`));
    }
    out.missing.set(prefix, missing);
  }
  return out;
}

/** How far a mirror is behind its source: what `mirror` would copy now. */
export interface MirrorLag {
  /** Objects the destination lacks (the config among them, before the first copy). */
  missingObjects: number;
  missingBytes: number;
  missingByPrefix: Record<string, { objects: number; bytes: number }>;
  /** When the oldest of them was written at the source, where the store tells (S3, files). */
  oldestMissing?: Date;
  /** Objects the destination holds with other sizes: a copy would report them, not copy them. */
  conflicts: number;
}

/**
 * What a mirror run would copy now, found by listing both stores — reads
 * only: no lease, no write, no key needed. The agent watches each
 * destination's lag with it between mirror runs.
 */
export async function mirrorLag(from: ObjectStore, to: ObjectStore): Promise<MirrorLag> {
  const sourceConfig = await checkMirrorPair(from, to);
  const diff = await diffStores(from, to);
  const lag: MirrorLag = { missingObjects: 0, missingBytes: 0, missingByPrefix: {}, conflicts: diff.conflicts.length };
  const count = (prefix: string, bytes: number, modified?: Date) => {
    const p = (lag.missingByPrefix[prefix] ??= { objects: 0, bytes: 0 });
    p.objects++;
    p.bytes += bytes;
    lag.missingObjects++;
    lag.missingBytes += bytes;
    if (modified && (!lag.oldestMissing || modified < lag.oldestMissing)) lag.oldestMissing = modified;
  };
  for (const [prefix, missing] of diff.missing) for (const o of missing) count(prefix, o.size, o.modified);
  if (!(await to.head(CONFIG_KEY))) count(CONFIG_KEY, sourceConfig.length, (await from.head(CONFIG_KEY))?.modified);
  return lag;
}

/** Writes the config last (until then the copy is not a repository) and settles `report.ok`. */
export async function finishMirror(to: ObjectStore, sourceConfig: Uint8Array, report: MirrorReport): Promise<void> {
  if (!(await to.head(CONFIG_KEY))) {
    await to.put(CONFIG_KEY, sourceConfig);
    report.copied++;
    report.bytesCopied += sourceConfig.length;
    report.copiedByPrefix[CONFIG_KEY] = 1;
  } else report.present++;
  report.ok = report.problems.length === 0;
}
