/**
 * A repository: a store plus the keys that open it. `init` writes the config
 * once; `open` reads it and opens the key ring. Three parts do the work: the
 * key ring (`key-ring.ts`), sealed-object I/O (`sealed-objects.ts`, the only
 * way to the store from above), and the backup catalogue (`catalogue.ts`).
 * What is left here is the config, the chunk index and the manifests.
 */
import { randomUUID } from 'node:crypto';
import pLimit from 'p-limit';
import { sha256Hex } from '../bytes.js';
import { DEFAULT_CHUNKER, DEFAULT_RELATION_CHUNKER, validateChunkerParams, validateFixedChunker, type ChunkerParams, type FixedChunkerParams } from '../chunking/chunker.js';
import {
  AlreadyInitialisedError,
  BackupNotFoundError,
  CofferError,
  CorruptObjectError,
  InvalidArgumentError,
  MissingObjectError,
  NotARepositoryError,
  ObjectConflictError,
  UnsupportedFormatError,
} from '../errors.js';
import { decodeConfig, DELTA_FORMAT, encodeConfig, FORMAT_VERSION, READABLE_FORMATS, type RepositoryConfig } from '../format/config.js';
import { decodeIndex, encodeIndex, type IndexedPack } from '../format/index-file.js';
import { BACKUP_PREFIX, backupKey, CONFIG_KEY, expectedSha, INDEX_PREFIX, indexKey, isBackupKey, isIndexKey, isPageIndexKey } from '../format/keys-layout.js';
import type { ReadScratch } from './read-scratch.js';
import { chunkIdsOf, decodeManifest, encodeManifest, manifestIdRegion, type BackupManifest, type BackupSummary } from '../format/manifest.js';
import type { KeyProvider } from '../keys/key-provider.js';
import type { ObjectStore } from '../store/object-store.js';
import { listSummaries, summaryFor, writeSummary } from './catalogue.js';
import { ChunkIndex } from './chunk-index.js';
import { KeyRing, loadKeyObjects } from './key-ring.js';
import { SealedObjects, type SealedKind } from './sealed-objects.js';

export interface InitOptions {
  chunker?: Partial<ChunkerParams>;
  /** Chunk size for PostgreSQL relation files, a multiple of 8 KiB (default 8 KiB); 0 chunks them with FastCDC like other files. */
  relationChunkSize?: number;
  /** New relation chunks are compressed together up to this many bytes per blob (default 128 KiB; the chunk size = no groups). */
  relationGroupBytes?: number;
  /** zstd level for chunks, 1–19 (default 3). */
  compressionLevel?: number;
  /** Target pack size in bytes (default 16 MiB). */
  packSize?: number;
  /**
   * How many deltas deep a changed relation page may be stored against its previous versions before it is
   * stored whole again (default 8; 0 stores every page whole). With deltas the repository is format 3.
   */
  pageDeltaDepth?: number;
}

/** Deltas of deltas a page may be stored as by default: a restore applies up to this many per page. */
export const DEFAULT_PAGE_DELTA_DEPTH = 8;
/** The deepest chain a repository may be set up for (a restore follows at most 64). */
export const MAX_PAGE_DELTA_DEPTH = 32;

export const DEFAULT_PACK_SIZE = 16 * 1024 * 1024;

export interface OpenOptions {
  /** The repository id this client was set up for (COFFER_REPOSITORY_ID): any other config is refused. */
  expectRepositoryId?: string;
  /** Told of objects passed over: foreign names under Coffer's prefixes, damaged manifests set aside by listings. */
  onWarning?: (message: string) => void;
}

export type { SealedKind };

/** A backup's manifest key and its manifest, read once and handed on. */
export interface LoadedBackup {
  key: string;
  manifest: BackupManifest;
}

export class Repository {
  readonly config: RepositoryConfig;
  /** Data keys, who wraps them, `key add` and `key rotate`. */
  readonly keyRing: KeyRing;
  /** Reads and writes objects: the only way to the store from the layers above. */
  readonly objects: SealedObjects;

  /** Where warnings go (objects passed over); by default nowhere. */
  onWarning: (message: string) => void = () => undefined;

  private constructor(store: ObjectStore, config: RepositoryConfig, keyRing: KeyRing) {
    this.config = config;
    this.keyRing = keyRing;
    this.objects = new SealedObjects(store, config.repositoryId, keyRing.material, config.compression.level);
  }

  get location(): string {
    return this.objects.location;
  }

  /**
   * Creates a new repository in `store`; fails with `AlreadyInitialisedError` if
   * one is there. The first provider generates the data key; every other one
   * wraps it too, so any of them opens the repository.
   */
  static async init(store: ObjectStore, providers: KeyProvider | readonly KeyProvider[], options: InitOptions = {}): Promise<Repository> {
    const list = providerList(providers);
    if (list.length === 0) throw new InvalidArgumentError('key', 'a repository needs at least one key provider');
    if (await store.head(CONFIG_KEY)) throw new AlreadyInitialisedError(store.properties.location);
    const present = await firstObjects(store);
    if (present.length > 0) {
      // Init over a repository whose config was lost would make every old object unreadable for good.
      const coffer = present.some((k) => COFFER_PREFIXES.some((p) => k.startsWith(p)));
      throw new AlreadyInitialisedError(
        store.properties.location,
        coffer
          ? `it holds Coffer objects (${present.join(', ')}) but no config: the repository's config is lost — put it back (a mirror holds a copy) instead of starting a new repository here`
          : `it is not empty (${present.join(', ')}); a repository starts in an empty location`,
      );
    }
    const chunker = validateChunkerParams({ ...DEFAULT_CHUNKER, ...options.chunker });
    const relationChunker = options.relationChunkSize === 0 ? undefined : relationChunkerOf(options.relationChunkSize, options.relationGroupBytes);
    const level = options.compressionLevel ?? 3;
    if (!Number.isInteger(level) || level < 1 || level > 19) throw new InvalidArgumentError('compression level', `must be an integer 1–19, got ${level}`);
    const packSize = options.packSize ?? DEFAULT_PACK_SIZE;
    if (!Number.isInteger(packSize) || packSize < 64 * 1024 || packSize > 1024 * 1024 * 1024) {
      throw new InvalidArgumentError('pack size', `must be between 64 KiB and 1 GiB, got ${packSize}`);
    }
    const depth = options.pageDeltaDepth ?? DEFAULT_PAGE_DELTA_DEPTH;
    if (!Number.isInteger(depth) || depth < 0 || depth > MAX_PAGE_DELTA_DEPTH) throw new InvalidArgumentError('page delta depth', `must be an integer 0–${MAX_PAGE_DELTA_DEPTH}, got ${depth}`);
    // Deltas are taken between relation pages: without fixed relation chunks there are none.
    const pageDeltas = depth > 0 && relationChunker ? { depth } : undefined;
    const repositoryId = randomUUID();
    const { ring, record, idKeyCheck } = await KeyRing.create(store, repositoryId, list);
    const config: RepositoryConfig = {
      format: pageDeltas ? DELTA_FORMAT : FORMAT_VERSION,
      repositoryId,
      createdAt: new Date().toISOString(),
      chunker: { algorithm: 'fastcdc', ...chunker },
      ...(relationChunker ? { relationChunker } : {}),
      compression: { algorithm: 'zstd', level },
      packSize,
      ...(pageDeltas ? { pageDeltas } : {}),
      keys: [record],
      idKeyCheck,
    };
    const configBytes = encodeConfig(config);
    try {
      await store.put(CONFIG_KEY, configBytes);
    } catch (e) {
      if (e instanceof ObjectConflictError) throw new AlreadyInitialisedError(store.properties.location);
      throw e;
    }
    // After the config, never before: a copy left by an init that lost the race would belong to another repository.
    await ring.writeConfigCopy(configBytes, config.keys);
    return new Repository(store, config, ring);
  }

  /**
   * Rebuilds a lost `config` from its authenticated copy under `keys/`
   * (written at init, or by `ensureConfigCopy`): the copy counts only once
   * `providers` open its data keys and the HMAC of every key object checks out
   * under the chunk-id key they hold. Writes the config back (create-only) and
   * opens the repository.
   */
  static async recoverConfig(store: ObjectStore, providers: KeyProvider | readonly KeyProvider[], options: OpenOptions = {}): Promise<{ repo: Repository; from: string }> {
    const list = providerList(providers);
    if (await store.head(CONFIG_KEY)) throw new AlreadyInitialisedError(store.properties.location, 'its config is present: there is nothing to recover');
    const copies = (await loadKeyObjects(store, undefined)).filter((o) => o.body.reason === 'config' && typeof o.body.config === 'string');
    if (copies.length === 0) {
      throw new MissingObjectError(CONFIG_KEY, `the config of ${store.properties.location} is lost and no copy of it is under keys/ (repositories made before copies were kept): put it back from a mirror`);
    }
    let lastError: unknown;
    for (const copy of copies) {
      const raw = Buffer.from(copy.body.config!, 'utf8');
      const config = decodeConfig(raw);
      if (typeof config === 'string' || config.repositoryId !== copy.body.repositoryId) {
        lastError = new CorruptObjectError(copy.key, typeof config === 'string' ? `its config copy: ${config}` : 'its config copy names another repository');
        continue;
      }
      try {
        const ring = await KeyRing.open(store, config, list);
        await store.put(CONFIG_KEY, raw);
        const repo = new Repository(store, config, ring);
        if (options.onWarning) repo.onWarning = options.onWarning;
        return { repo, from: copy.key };
      } catch (e) {
        if (!(e instanceof CofferError) || e instanceof ObjectConflictError) throw e;
        lastError = e;
      }
    }
    throw lastError;
  }

  /** Writes the authenticated copy of the config when no `keys/` object holds one yet (repositories made before copies were kept); returns its key, or undefined when one is there. */
  async ensureConfigCopy(): Promise<string | undefined> {
    if (this.keyRing.hasConfigCopy) return undefined;
    return this.keyRing.writeConfigCopy(await this.objects.get(CONFIG_KEY), this.config.keys);
  }

  /**
   * Opens the repository in `store` with whichever of `providers` can unwrap
   * its data keys. With `expect.repositoryId`, a config of any other
   * repository (one swapped in, wrapped under someone else's key) is refused
   * before any key is asked.
   */
  static async open(store: ObjectStore, providers: KeyProvider | readonly KeyProvider[], options: OpenOptions = {}): Promise<Repository> {
    const list = providerList(providers);
    let raw: Uint8Array;
    try {
      raw = await store.get(CONFIG_KEY);
    } catch (e) {
      if (!(e instanceof MissingObjectError)) throw e;
      const present = await firstObjects(store);
      // Objects without their config: a repository that lost its config, not "no repository" (which invites init).
      if (present.some((k) => COFFER_PREFIXES.some((p) => k.startsWith(p)))) {
        throw new MissingObjectError(CONFIG_KEY, `the repository's config is lost: ${store.properties.location} holds its objects (${present.join(', ')}); run coffer repair to rebuild it from its authenticated copy under keys/ (or put it back from a mirror), and do not run init here`);
      }
      throw new NotARepositoryError(store.properties.location);
    }
    const config = decodeConfig(raw);
    if (typeof config === 'string') {
      const present = await firstObjects(store);
      if (present.some((k) => COFFER_PREFIXES.some((p) => k.startsWith(p)))) throw new CorruptObjectError(CONFIG_KEY, `${config}; the location holds a repository's objects, so its config is damaged (a mirror holds a copy)`);
      throw new NotARepositoryError(store.properties.location, config);
    }
    if (!READABLE_FORMATS.includes(config.format)) throw new UnsupportedFormatError(CONFIG_KEY, `format ${config.format}; this Coffer reads formats ${READABLE_FORMATS.join(', ')}`);
    if (options.expectRepositoryId !== undefined && config.repositoryId !== options.expectRepositoryId) {
      throw new CorruptObjectError(CONFIG_KEY, `belongs to repository ${config.repositoryId}, not the expected ${options.expectRepositoryId} (replaced, or the wrong location)`);
    }
    if (config.relationChunker !== undefined && config.relationChunker.algorithm !== 'fixed') {
      throw new UnsupportedFormatError(CONFIG_KEY, `relation chunker ${JSON.stringify(config.relationChunker.algorithm)}; this Coffer knows "fixed"`);
    }
    try {
      validateChunkerParams(config.chunker);
      if (config.relationChunker) validateFixedChunker(config.relationChunker);
    } catch (e) {
      throw new CorruptObjectError(CONFIG_KEY, (e as Error).message);
    }
    const ring = await KeyRing.open(store, config, list);
    const repo = new Repository(store, config, ring);
    if (options.onWarning) repo.onWarning = options.onWarning;
    for (const key of ring.foreign) repo.onWarning(`ignored ${key}: not a name Coffer writes`);
    return repo;
  }

  /** @internal */
  async readIndexObject(key: string): Promise<IndexedPack[]> {
    const plain = await this.openIndexObject(key);
    try {
      return decodeIndex(plain);
    } catch (e) {
      throw new CorruptObjectError(key, (e as Error).message);
    }
  }

  /** An index object's plaintext, checked against its name and tag (for callers that scan it with `scanIndex`). @internal */
  async openIndexObject(key: string): Promise<Buffer> {
    return this.openLarge('index', key);
  }

  /** Reads, verifies and opens an index object or manifest. */
  private async openLarge(kind: 'index' | 'manifest', key: string): Promise<Buffer> {
    return this.objects.openOwned(kind, key, await this.objects.getVerified(key));
  }

  /** @internal */
  writeIndexObject(packs: readonly IndexedPack[], pages = false): Promise<{ key: string; size: number }> {
    return this.writeIndexPlain(encodeIndex(packs), pages);
  }

  /** Seals and writes an index object from its encoded plaintext. @internal */
  async writeIndexPlain(plain: Buffer, pages = false): Promise<{ key: string; size: number }> {
    const sealed = this.objects.seal('index', plain);
    const key = indexKey(sha256Hex(sealed), pages);
    await this.objects.put(key, sealed);
    return { key, size: sealed.length };
  }

  async listIndexKeys(): Promise<string[]> {
    return this.ownKeys(INDEX_PREFIX, isIndexKey);
  }

  /** Keys under `prefix` that are Coffer's; anything else there (an editor's `~` file, `.DS_Store`) is ignored with a warning. */
  async ownKeys(prefix: string, ours: (key: string) => boolean): Promise<string[]> {
    const keys: string[] = [];
    for (const { key } of await this.objects.list(prefix)) {
      if (ours(key)) keys.push(key);
      else this.onWarning(`ignored ${key}: not a name Coffer writes`);
    }
    return keys.sort();
  }

  /**
   * Loads index objects into memory: every one (check), or — with `pages:
   * false`, for a backup — all but those listing relation pages, which a
   * backup compares with its parent's pages instead.
   * @internal
   */
  async loadIndex(options: { pages?: boolean } = {}): Promise<ChunkIndex> {
    return withIndexRetry(async () => {
      const index = new ChunkIndex();
      const limit = pLimit(Math.max(2, Math.min(16, this.objects.connections)));
      const keys = (await this.listIndexKeys()).filter((k) => options.pages !== false || !isPageIndexKey(k));
      await Promise.all(
        keys.map((key) =>
          limit(async () => {
            for (const pack of await this.readIndexObject(key)) for (const e of pack.entries) index.add(pack.sha, e);
          }),
        ),
      );
      return index;
    });
  }

  /**
   * Stores the manifest, then its catalogue summary. `committed` runs once
   * the manifest is durable, beside the summary's write (a backup's lease
   * ends there: what it protected is named by a manifest from then on).
   */
  async writeManifest(manifest: BackupManifest, options: { committed?: () => Promise<unknown> } = {}): Promise<string> {
    const sealed = this.objects.seal('manifest', this.objects.codec.compress(encodeManifest(manifest)));
    const key = backupKey(manifest.label, sha256Hex(sealed));
    await this.objects.put(key, sealed);
    // The backup exists from here; its catalogue summary follows (a crash before it: summarised from the manifest).
    await Promise.all([writeSummary(this, key, manifest), options.committed?.()]);
    return key;
  }

  async readManifest(key: string): Promise<BackupManifest> {
    return this.readManifestInto(key);
  }

  /**
   * `readManifest`, read and decompressed into `scratch`'s buffers when
   * given: a caller reading manifest after manifest leaves no buffer of a
   * manifest's size behind each. The manifest's chunk lists are then views of
   * the scratch, valid until it is used again.
   * @internal
   */
  async readManifestInto(key: string, scratch?: ReadScratch): Promise<BackupManifest> {
    const plain = await this.openLarge('manifest', key);
    try {
      const manifest = decodeManifest(this.decompressManifest(plain, scratch));
      if (!READABLE_FORMATS.includes(manifest.format)) throw new UnsupportedFormatError(key, `manifest format ${manifest.format}`);
      // The sealed body is authentic; it must be the backup this name says. An older manifest copied
      // under a newer label (to make it "latest", or to hide a backup) is refused here.
      const named = labelOf(key);
      if (manifest.label !== named) throw new CorruptObjectError(key, `holds the manifest of backup ${manifest.label}, not ${named}`);
      return manifest;
    } catch (e) {
      if (e instanceof UnsupportedFormatError || e instanceof CorruptObjectError) throw e;
      throw new CorruptObjectError(key, `manifest does not parse: ${(e as Error).message}`);
    }
  }

  /** A manifest's plaintext, decompressed into `scratch` when one is given. */
  private decompressManifest(sealedPlain: Buffer, scratch: ReadScratch | undefined): Buffer {
    if (scratch === undefined) return this.objects.codec.decompress(sealedPlain);
    const size = this.objects.codec.frameSize(sealedPlain);
    return this.objects.codec.decompressInto(sealedPlain, scratch.plainFor(size ?? 0));
  }

  /**
   * Every chunk id manifest `key` lists, back to back: what garbage
   * collection reads every manifest for. Read and decompressed into
   * `scratch`'s buffers, so reading manifest after manifest does not leave
   * one buffer of a manifest's size behind each; the ids are a view of them.
   * @internal
   */
  async manifestChunkIds(key: string, scratch: ReadScratch): Promise<Buffer> {
    const plain = await this.openLarge('manifest', key);
    let region: Buffer | undefined;
    try {
      region = manifestIdRegion(this.decompressManifest(plain, scratch));
    } catch (e) {
      throw new CorruptObjectError(key, `manifest does not parse: ${(e as Error).message}`);
    }
    if (region) return region;
    // A plain JSON manifest (format 1): decoded whole.
    const manifest = await this.readManifest(key);
    return Buffer.concat(manifest.entries.filter((e) => e.type === 'file' && e.linkTo === undefined).map((e) => chunkIdsOf(e)));
  }

  /** Manifest keys, oldest first (labels sort by time). */
  async listBackupKeys(): Promise<string[]> {
    return this.ownKeys(BACKUP_PREFIX, isBackupKey);
  }

  /** Every backup's catalogue summary, oldest first; no manifest is read where a summary exists. */
  listBackups(): Promise<BackupSummary[]> {
    return listSummaries(this);
  }

  /** One backup's catalogue summary (its manifest is read only where no summary was written). */
  backupSummary(key: string): Promise<BackupSummary> {
    return summaryFor(this, key);
  }

  /**
   * Finds a backup by `latest`, its short id (any unique prefix of its SHA-256),
   * its label, or its full key.
   */
  async resolveBackup(selector: string): Promise<LoadedBackup> {
    const key = await this.findBackupKey(selector);
    return { key, manifest: await this.readManifest(key) };
  }

  /**
   * The key of the backup `selector` names: `latest`, a full key, a label (or
   * the start of one), an id (any unique start of the manifest's SHA-256),
   * or else a tag (the newest backup carrying it). Ambiguity names the
   * candidates.
   */
  async findBackupKey(selector: string): Promise<string> {
    const keys = await this.listBackupKeys();
    if (keys.length === 0) throw new BackupNotFoundError(selector, 'the repository holds no backups');
    if (selector === 'latest') return keys[keys.length - 1]!;
    const s = selector.toLowerCase();
    const hex = /^[0-9a-f]+$/.test(s);
    // A label is matched from 8 characters on (a date): shorter digits are an id's start, not every label's.
    const matches = keys.filter((k) => k === selector || (selector.length >= 8 && k.slice(BACKUP_PREFIX.length).startsWith(selector)) || (hex && expectedSha(k)!.startsWith(s)));
    if (matches.length === 1) return matches[0]!;
    if (matches.length > 1) {
      const shown = matches.slice(0, 8).map((k) => `${expectedSha(k)!.slice(0, 12)} (${labelOf(k)})`);
      throw new BackupNotFoundError(selector, `ambiguous: matches ${shown.join(', ')}${matches.length > 8 ? `, and ${matches.length - 8} more` : ''}`);
    }
    const tagged = (await this.listBackups()).filter((b) => b.tags.includes(selector)).pop();
    if (tagged) return tagged.key;
    throw new BackupNotFoundError(selector, 'no backup id, label or tag matches');
  }
}

/**
 * Runs a read of the whole index again when an index object it listed is gone
 * by the time it is read: garbage collection merges index objects, writing
 * the merged one before it deletes those it replaces, so a fresh listing
 * finds every entry. A few tries; then the absence is real and reported.
 */
export async function withIndexRetry<T>(read: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await read();
    } catch (e) {
      if (!(e instanceof MissingObjectError && e.key.startsWith(INDEX_PREFIX)) || attempt >= 4) throw e;
    }
  }
}

/** The label a manifest key names: `backups/<label>-<sha256>`. */
function labelOf(key: string): string {
  return key.slice(BACKUP_PREFIX.length, -65);
}

/** Prefixes only Coffer writes. */
const COFFER_PREFIXES = ['data/', 'index/', 'backups/', 'catalogue/', 'damage/', 'keys/', 'stanzas/', 'wal/', 'keep/', 'condemned/', 'verified/', 'ledger/', 'audit/'];

/** Up to three object keys in the store (enough to say whether, and with what, it is occupied). */
async function firstObjects(store: ObjectStore): Promise<string[]> {
  const keys: string[] = [];
  for await (const o of store.list('')) {
    if (o.key === CONFIG_KEY) continue;
    keys.push(o.key);
    if (keys.length >= 3) break;
  }
  return keys;
}

function providerList(providers: KeyProvider | readonly KeyProvider[]): readonly KeyProvider[] {
  return Array.isArray(providers) ? (providers as readonly KeyProvider[]) : [providers as KeyProvider];
}

function relationChunkerOf(size = DEFAULT_RELATION_CHUNKER.size, groupBytes = Math.max(DEFAULT_RELATION_CHUNKER.groupBytes!, size)): FixedChunkerParams {
  return validateFixedChunker({ algorithm: 'fixed', size, ...(groupBytes !== size ? { groupBytes } : {}) });
}
