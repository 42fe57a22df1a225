/**
 * Collects sealed chunks into packs and commits them in ARCHITECTURE order:
 * a pack is uploaded (create-only, durable) before any index names it, and
 * the index objects are written before the caller writes a manifest. A crash
 * at any moment therefore leaves at worst packs that nothing references.
 * Backups and the WAL archive both write through it; WAL packs are not
 * indexed (each WAL record names its chunks' locations itself).
 */
import { sha256Hex } from '../bytes.js';
import { type IndexedPack } from '../format/index-file.js';
import { packKey } from '../format/keys-layout.js';
import { encodeTrailer, TRAILER_ENTRY, type PackEntry } from '../format/pack.js';
import { ChunkIndex, idKeyOf } from '../repository/chunk-index.js';
import type { Repository } from '../repository/repository.js';

import type { SealedBlob } from './sealed-groups.js';

export type { SealedBlob };

export interface PackWriterStats {
  packs: number;
  indexes: number;
  newChunks: number;
  newBytes: number;
  storedBytes: number;
}

/** Packs per index object: an index is written at least this often, so a killed backup's packs are reused by the next. */
const PACKS_PER_INDEX = 64;

/** A pack's tail: its sealed trailer and the trailer's length. */
export function sealedTrailer(repo: Repository, entries: readonly PackEntry[]): Buffer {
  const trailer = repo.objects.seal('pack-trailer', encodeTrailer(entries));
  const len = Buffer.alloc(4);
  len.writeUInt32BE(trailer.length);
  return Buffer.concat([trailer, len]);
}

export class PackWriter {
  private readonly repo: Repository;
  private readonly index: ChunkIndex;
  private readonly maxUploads: number;
  /** Ids accepted for storage but whose pack is not yet indexed. */
  private readonly reserved = new Set<string>();
  /** The pack being filled; blobs are copied in as they arrive. */
  private buf: Buffer | undefined;
  /** Pack buffers whose upload finished, for reuse: memory stays at (uploads + 1) packs. */
  private readonly spare: Buffer[] = [];
  private entries: PackEntry[] = [];
  private size = 0;
  private readonly uploading = new Set<Promise<void>>();
  private uploaded: IndexedPack[] = [];
  private failure: unknown;
  readonly stats: PackWriterStats = { packs: 0, indexes: 0, newChunks: 0, newBytes: 0, storedBytes: 0 };

  private readonly known: ((id: Uint8Array) => boolean) | undefined;
  private readonly pages: boolean;
  private readonly indexed: boolean;
  private readonly beforeIndex: (() => void) | undefined;
  /** Without an index, the packs uploaded, for the caller to record. */
  readonly packs: IndexedPack[] = [];

  /**
   * `index` says which chunks the repository holds. A writer of relation
   * `pages` is given an empty index and `known` instead — the parent backup's
   * pages — and its index objects are marked as page indexes. With
   * `indexed: false` no index object is written: the packs are listed in
   * `packs` once `finish` resolves.
   */
  constructor(
    repo: Repository,
    index: ChunkIndex,
    options: {
      maxUploads?: number;
      pages?: boolean;
      known?: (id: Uint8Array) => boolean;
      indexed?: boolean;
      /**
       * Runs before each index object is written (a writer proves its lease there): an index entry is a
       * commit too — once written, later backups take its chunks as stored.
       */
      beforeIndex?: () => void;
    } = {},
  ) {
    this.repo = repo;
    this.index = index;
    this.maxUploads = options.maxUploads ?? 2;
    this.pages = options.pages ?? false;
    this.known = options.known;
    this.indexed = options.indexed ?? true;
    this.beforeIndex = options.beforeIndex;
  }

  /**
   * For each id, whether its chunk must be stored. Answers `true` once per id:
   * the caller that got `true` must then `add` the chunk.
   */
  claim(ids: readonly Uint8Array[]): boolean[] {
    return ids.map((id) => {
      if (this.index.has(id) || this.known?.(id)) return false;
      const k = idKeyOf(id);
      if (this.reserved.has(k)) return false;
      this.reserved.add(k);
      return true;
    });
  }

  /** Adds sealed blobs; waits when too many packs are uploading (backpressure). */
  async add(blobs: readonly SealedBlob[]): Promise<void> {
    if (this.failure) throw this.failure;
    for (const b of blobs) {
      this.append(b.blob);
      const offset = this.size - b.blob.length;
      for (const c of b.chunks) {
        this.entries.push({ id: Buffer.from(c.id), offset, length: b.blob.length, rawLength: c.rawLength, ...(c.base ? { base: Buffer.from(c.base) } : {}) });
        this.stats.newChunks++;
        this.stats.newBytes += c.rawLength;
      }
      // The trailer counts toward the pack's size: a pack of pages has one entry per 8 KiB page, and its
      // trailer then fits in the buffer's slack instead of growing (and copying) the whole pack.
      if (this.size + this.entries.length * TRAILER_ENTRY >= this.repo.config.packSize) await this.sealPack();
    }
  }

  private append(bytes: Uint8Array): void {
    if (!this.buf) this.buf = this.spare.pop() ?? Buffer.allocUnsafeSlow(this.repo.config.packSize + (1 << 20));
    if (this.size + bytes.byteLength > this.buf.length) {
      const grown = Buffer.allocUnsafeSlow(Math.max(this.buf.length * 2, this.size + bytes.byteLength));
      this.buf.copy(grown, 0, 0, this.size);
      this.buf = grown;
    }
    this.buf.set(bytes, this.size);
    this.size += bytes.byteLength;
  }

  private async sealPack(): Promise<void> {
    if (this.entries.length === 0) return;
    const entries = this.entries;
    this.append(sealedTrailer(this.repo, entries));
    const buf = this.buf!;
    const pack = buf.subarray(0, this.size);
    this.buf = undefined;
    this.entries = [];
    this.size = 0;
    while (this.uploading.size >= this.maxUploads) await Promise.race(this.uploading);
    if (this.failure) throw this.failure;
    const sha = sha256Hex(pack);
    const p: Promise<void> = this.repo.objects
      .put(packKey(sha), pack)
      .then(async () => {
        this.stats.packs++;
        this.stats.storedBytes += pack.length;
        if (!this.indexed) this.packs.push({ sha, entries });
        else {
          this.uploaded.push({ sha, entries });
          if (this.uploaded.length >= PACKS_PER_INDEX) await this.writeIndex();
        }
      })
      .catch((e: unknown) => {
        this.failure ??= e;
      })
      .finally(() => {
        this.uploading.delete(p);
        this.spare.push(buf);
      });
    this.uploading.add(p);
  }

  /** Writes an index object for the packs uploaded since the last one; unless `last`, their chunks move from reserved to indexed for the claims still to come. */
  private async writeIndex(last = false): Promise<void> {
    const batch = this.uploaded;
    this.uploaded = [];
    if (batch.length === 0) return;
    this.beforeIndex?.();
    const { size } = await this.repo.writeIndexObject(batch, this.pages);
    this.stats.indexes++;
    this.stats.storedBytes += size;
    if (last) return;
    for (const p of batch) {
      for (const e of p.entries) {
        this.index.add(p.sha, e);
        this.reserved.delete(idKeyOf(e.id));
      }
    }
  }

  /** Seals the last pack, waits for every upload, and writes the remaining index. */
  async finish(): Promise<PackWriterStats> {
    await this.sealPack();
    while (this.uploading.size > 0) await Promise.race(this.uploading);
    if (this.failure) throw this.failure;
    await this.writeIndex(true);
    return this.stats;
  }

  /** Waits for in-flight uploads without committing anything more (used when a backup fails). */
  async abandon(): Promise<void> {
    while (this.uploading.size > 0) await Promise.race(this.uploading);
  }
}
