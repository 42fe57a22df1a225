/**
 * The previous versions of a backup's changed pages: what the chunk pipeline
 * stores a new page as a delta against (docs/FORMAT.md, "Chains"). The base
 * of block b of a relation file is block b of the same file in the parent
 * backup, read back from the repository — following its own chain when it
 * is a delta — and given only when:
 *
 * - it is indexed, and no pack of its chain is condemned by a running
 *   garbage collection (the same rule as deduplication: a base a collection
 *   is about to delete is never taken; the page is stored whole);
 * - its chain is shorter than the repository's depth, so the new delta
 *   keeps the chain within it (a page at the depth is stored whole again);
 * - it reads back and verifies. A damaged base makes the page be stored
 *   whole, never fails the backup: the new backup then needs nothing of it.
 *
 * Where the parent's pages lie is found once, the first time a base is
 * asked for, by the restore's planning (the parent's page-chunked files as
 * a restore would need them): memory follows the parent's pages, not the
 * repository's history. Pages read are kept in a bounded cache (a changed
 * page's neighbours share its group blob and often its chain).
 */
import pLimit from 'p-limit';
import { asBuffer } from '../bytes.js';
import type { PageBase } from '../content/chunk-pipeline.js';
import { ChunkCodec } from '../format/chunk-codec.js';
import { packKey } from '../format/keys-layout.js';
import type { BackupManifest, TreeEntry } from '../format/manifest.js';
import type { Repository } from '../repository/repository.js';
import { chainDepths, locateChunks, type ChunkLookup } from '../restore/plan.js';

/** Pages kept decoded (8 KiB each: 32 MiB). */
const PAGE_CACHE = 4096;
/** Blobs kept as fetched (a group blob holds up to 16 pages of 8 KiB, compressed). */
const BLOB_CACHE = 256;
/** Reads in flight. */
const READS = 8;

interface Located {
  lookup: ChunkLookup;
  /** Parent's page-chunked files by path: index into the lookup's files. */
  files: Map<string, number>;
  /** Per chunk: usable as a base (see the module comment). */
  usable: Uint8Array;
}

export class PageBases {
  private located: Promise<Located | undefined> | undefined;
  private readonly codec: ChunkCodec;
  private readonly pages = new Map<number, Promise<Buffer | undefined>>();
  private readonly blobs = new Map<string, Promise<Buffer>>();
  private readonly limit = pLimit(READS);
  /** Pages given as bases, and pages whose base could not be read. */
  readonly stats = { given: 0, unreadable: 0 };

  /**
   * `parent` is the backup's parent; `condemned` the packs a running
   * collection condemned (read under the backup's lease, before its index);
   * `depth` the repository's chain depth.
   */
  constructor(
    private readonly repo: Repository,
    private readonly parent: { key: string; manifest: BackupManifest },
    private readonly condemned: ReadonlySet<string>,
    private readonly depth: number,
  ) {
    const { idKey, dataKeys, currentKeyId } = repo.keyRing.material;
    // A codec of its own: the main thread's seals chunks of inline backups meanwhile.
    this.codec = new ChunkCodec({ idKey, dataKeys: new Map(dataKeys), currentKeyId }, repo.config.compression.level);
  }

  /** Starts finding where the parent's pages lie, before the first base is asked for. */
  prepare(): void {
    // A parent whose pages cannot be located (a damaged index object, say) gives no bases: pages are stored whole.
    this.located ??= this.locate().catch(() => undefined);
  }

  /** For blocks `blocks` of the file at `place`: each one's base, or undefined. */
  async bases(place: string, blocks: readonly number[]): Promise<(PageBase | undefined)[]> {
    this.prepare();
    const located = await this.located;
    if (!located) return blocks.map(() => undefined);
    const { lookup, files, usable } = located;
    const f = files.get(place);
    if (f === undefined) return blocks.map(() => undefined);
    const first = lookup.fileStart[f]!;
    const end = lookup.fileStart[f + 1]!;
    return Promise.all(
      blocks.map(async (b) => {
        const u = first + b;
        if (u >= end) return undefined;
        const c = lookup.useChunk[u]!;
        if (!usable[c]) return undefined;
        const page = await this.page(lookup, c);
        if (!page) return undefined;
        this.stats.given++;
        return { id: lookup.table.id(c), page };
      }),
    );
  }

  private async locate(): Promise<Located> {
    const entries = this.parent.manifest.entries.filter((e): e is TreeEntry => e.type === 'file' && e.chunking === 'fixed' && e.linkTo === undefined);
    const lookup = await locateChunks(this.repo, entries, this.parent.key);
    const depth = chainDepths(lookup, this.parent.key);
    const { table, base } = lookup;
    const usable = new Uint8Array(table.count);
    for (let c = 0; c < table.count; c++) {
      if (depth[c]! >= this.depth) continue;
      let ok = true;
      for (let k = c; k >= 0 && ok; k = base[k]!) ok = table.pack[k]! >= 0 && !this.condemned.has(table.packs[table.pack[k]!]!);
      usable[c] = ok ? 1 : 0;
    }
    return { lookup, files: new Map(entries.map((e, i) => [e.path, i])), usable };
  }

  /** Chunk `c`'s page, verified against its id (its chain's bases first); undefined when it cannot be read. */
  private page(lookup: ChunkLookup, c: number): Promise<Buffer | undefined> {
    let p = this.pages.get(c);
    if (p) return p;
    p = this.read(lookup, c).catch(() => {
      this.stats.unreadable++;
      return undefined;
    });
    remember(this.pages, c, p, PAGE_CACHE);
    return p;
  }

  private async read(lookup: ChunkLookup, c: number): Promise<Buffer | undefined> {
    const { table } = lookup;
    const b = lookup.base[c]!;
    const base = b >= 0 ? await this.page(lookup, b) : undefined;
    if (b >= 0 && !base) return undefined;
    const blob = await this.blob(table.packs[table.pack[c]!]!, table.offset[c]!, table.length[c]!);
    const page = base ? this.codec.decodeDelta(table.id(c), blob, base) : this.codec.decode(table.id(c), blob);
    return typeof page === 'string' ? undefined : Buffer.from(page);
  }

  private blob(pack: string, offset: number, length: number): Promise<Buffer> {
    const key = `${pack}:${offset}`;
    let p = this.blobs.get(key);
    if (!p) {
      p = this.limit(async () => asBuffer(await this.repo.objects.get(packKey(pack), { offset, length })));
      remember(this.blobs, key, p, BLOB_CACHE);
    }
    return p;
  }
}

/** Adds to a map that forgets its oldest entries past `max`. */
function remember<K, V>(map: Map<K, V>, key: K, value: V, max: number): void {
  map.set(key, value);
  if (map.size > max) map.delete(map.keys().next().value!);
}
