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
 * This class finds the chains and reads their sealed blobs; the thread that
 * asked decodes them (`decodeBases` in the chunk pipeline), so a backup's
 * worker threads share that work and the main thread only reads.
 *
 * Where the parent's pages lie is found once, the first time a base is
 * asked for, by the restore's planning (the parent's page-chunked files as
 * a restore would need them): memory follows the parent's pages, not the
 * repository's history. Packs are read in aligned segments, a few kept: a
 * changed page's neighbours share its group blob and its segment, and are
 * usually asked for next.
 */
import pLimit from 'p-limit';
import { asBuffer } from '../bytes.js';
import { noBases, type BaseChains } from '../content/chunk-pipeline.js';
import { packKey } from '../format/keys-layout.js';
import type { BackupManifest, TreeEntry } from '../format/manifest.js';
import type { Repository } from '../repository/repository.js';
import { chainDepths, locateChunks, type ChunkLookup } from '../restore/plan.js';

/** Packs are read in aligned segments of this size (a parent's groups of one file lie one after another), and the last few kept. */
const SEGMENT = 1024 * 1024;
const SEGMENT_CACHE = 24;
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
  private readonly segments = new Map<string, Promise<Buffer>>();
  private readonly limit = pLimit(READS);

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
  ) {}

  /** Starts finding where the parent's pages lie, before the first base is asked for. */
  prepare(): void {
    // A parent whose pages cannot be located (a damaged index object, say) gives no bases: pages are stored whole.
    this.located ??= this.locate().catch(() => undefined);
  }

  /**
   * For blocks `blocks` of the file at `place`: each one's base as the chain
   * of sealed blobs that gives it, for the asking thread to decode (`decodeBases`).
   */
  async bases(place: string, blocks: readonly number[]): Promise<BaseChains> {
    this.prepare();
    const located = await this.located;
    const f = located?.files.get(place);
    const chains: number[][] = blocks.map(() => []);
    if (located && f !== undefined) {
      const { lookup, usable } = located;
      const first = lookup.fileStart[f]!;
      const end = lookup.fileStart[f + 1]!;
      blocks.forEach((b, i) => {
        const u = first + b;
        if (u >= end || !usable[lookup.useChunk[u]!]) return;
        for (let c = lookup.useChunk[u]!; c >= 0; c = lookup.base[c]!) chains[i]!.push(c);
        chains[i]!.reverse();
      });
    }
    return located ? this.pack(located.lookup, chains) : noBases(blocks.length);
  }

  /** The chains as one reply: each blob once (a group serves many pages), read through the segment cache. */
  private async pack(lookup: ChunkLookup, chains: number[][]): Promise<BaseChains> {
    const { table } = lookup;
    const blobOf = new Map<string, number>();
    const order: number[] = [];
    const blobs: number[] = [];
    const steps = chains.map((chain) => chain.length);
    const ids = new Uint8Array(new ArrayBuffer(steps.reduce((n, k) => n + k, 0) * 32));
    let step = 0;
    for (const chain of chains) {
      for (const c of chain) {
        const key = `${table.pack[c]}:${table.offset[c]}`;
        let b = blobOf.get(key);
        if (b === undefined) blobOf.set(key, (b = order.push(c) - 1));
        blobs.push(b);
        ids.set(table.ids.subarray(c * 32, c * 32 + 32), step++ * 32);
      }
    }
    const bytes = await Promise.all(order.map((c) => this.blob(lookup, c)));
    const bounds = [0];
    for (const b of bytes) bounds.push(bounds[bounds.length - 1]! + b.length);
    const data = new Uint8Array(new ArrayBuffer(bounds[bounds.length - 1]!));
    bytes.forEach((b, i) => data.set(b, bounds[i]!));
    return { data, bounds, steps, ids, blobs };
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

  /** Chunk `c`'s blob, from the segment of its pack that holds it (or read alone when it crosses one's end). */
  private async blob(lookup: ChunkLookup, c: number): Promise<Buffer> {
    const { table } = lookup;
    const pack = table.packs[table.pack[c]!]!;
    const offset = table.offset[c]!;
    const length = table.length[c]!;
    const first = Math.floor(offset / SEGMENT);
    const dataEnd = lookup.packInfo.get(table.pack[c]!)?.dataEnd ?? 0;
    if (Math.floor((offset + length - 1) / SEGMENT) !== first || dataEnd < offset + length) {
      return this.limit(async () => asBuffer(await this.repo.objects.get(packKey(pack), { offset, length })));
    }
    const key = `${pack}:${first}`;
    let segment = this.segments.get(key);
    if (!segment) {
      const start = first * SEGMENT;
      segment = this.limit(async () => asBuffer(await this.repo.objects.get(packKey(pack), { offset: start, length: Math.min(SEGMENT, dataEnd - start) })));
      remember(this.segments, key, segment, SEGMENT_CACHE);
    }
    const bytes = await segment;
    return bytes.subarray(offset - first * SEGMENT, offset - first * SEGMENT + length);
  }
}

/** Adds to a map that forgets its oldest entries past `max`. */
function remember<K, V>(map: Map<K, V>, key: K, value: V, max: number): void {
  map.set(key, value);
  if (map.size > max) map.delete(map.keys().next().value!);
}
