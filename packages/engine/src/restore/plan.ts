/**
 * Restore planning from the manifest graph: which chunks the backup needs,
 * where each one is used (file, offset), where each sits (pack, offset), and
 * how to fetch them — per pack, sorted ranges with neighbours merged into one
 * request, or the whole pack in one SHA-256-verified read when most of it is
 * needed anyway.
 *
 * A backup of relation pages needs hundreds of thousands of chunks, so the
 * plan keeps them in parallel typed arrays beside an `IdTable`: no object,
 * string or hash-map entry per chunk or per use, which cost more to build and
 * to collect than the lookups themselves.
 */
import { BLOB_HEADER, ID_BYTES } from '../format/chunk-codec.js';
import { TRAILER_ENTRY } from '../format/pack.js';
import { SEAL_OVERHEAD } from '../crypto/aead.js';
import { chunkIdsOf, type TreeEntry } from '../format/manifest.js';
import { withIndexRetry, type Repository } from '../repository/repository.js';
import pLimit from 'p-limit';
import { CorruptObjectError } from '../errors.js';
import { scanIndex } from '../format/index-file.js';
import { IdTable } from '../repository/id-table.js';
import { condemnedPacks } from '../repository/condemned.js';
import type { RangeChunks } from './range-writer.js';

/** The distinct chunks a restore needs, with where each sits: chunk `i`'s location is at index `i` of the arrays. */
export class ChunkTable extends IdTable {
  /** Index into `packs`, or -1 while no index lists the chunk. */
  readonly pack: Int32Array;
  readonly offset: Uint32Array;
  readonly length: Uint32Array;
  readonly rawLength: Uint32Array;
  /** Pack names (SHA-256 hex) in the order first met. */
  readonly packs: string[] = [];
  private readonly packIndex = new Map<string, number>();

  constructor(capacity: number) {
    super(capacity);
    this.pack = new Int32Array(capacity).fill(-1);
    this.offset = new Uint32Array(capacity);
    this.length = new Uint32Array(capacity);
    this.rawLength = new Uint32Array(capacity);
  }

  /** The number of the pack named `sha`, given on first sight. */
  packNumber(sha: string): number {
    let p = this.packIndex.get(sha);
    if (p === undefined) this.packIndex.set(sha, (p = this.packs.push(sha) - 1));
    return p;
  }
}

/**
 * Where every chunk is used. Use `u` writes chunk `useChunk[u]` at `useOffset[u]` of file `useFile[u]`;
 * the uses of file `f` are `fileStart[f]` up to `fileStart[f + 1]`, in file order, and those of chunk
 * `c` are `chunkUses[chunkUseStart[c]]` up to `chunkUses[chunkUseStart[c + 1]]`. A delta restore clears
 * `live[u]` for bytes already in place.
 */
export interface ChunkLookup {
  table: ChunkTable;
  fileStart: Int32Array;
  useChunk: Int32Array;
  useFile: Int32Array;
  useOffset: Float64Array;
  chunkUseStart: Int32Array;
  chunkUses: Int32Array;
  live: Uint8Array;
  /** Chunks no index lists. */
  unindexed: number[];
  /** Per pack index holding needed chunks: where its blobs end and how many it has (fixes its size). */
  packInfo: Map<number, { dataEnd: number; n: number }>;
}

export interface FetchRange {
  pack: string;
  /** Byte range inside the pack; `whole` means the entire object is read and checked against its name. */
  offset: number;
  length: number;
  whole: boolean;
  /** Chunk indices, in pack order. */
  chunks: number[];
}

export interface PlanOptions {
  /** Merge ranges separated by at most this many unneeded bytes. */
  mergeGap: number;
  /** Largest single request. */
  maxRequest: number;
}

export const DEFAULT_PLAN: PlanOptions = { mergeGap: 256 * 1024, maxRequest: 16 * 1024 * 1024 };

/** The distinct chunks the given entries reference and every use of them (offsets are filled once lengths are known). `source` names the manifest in errors. */
export function neededChunks(files: readonly TreeEntry[], source: string): Omit<ChunkLookup, 'chunkUseStart' | 'chunkUses' | 'unindexed' | 'packInfo'> {
  const lists = files.map((f) => {
    try {
      return chunkIdsOf(f);
    } catch (e) {
      throw new CorruptObjectError(source, (e as Error).message);
    }
  });
  const fileStart = new Int32Array(files.length + 1);
  let total = 0;
  lists.forEach((ids, i) => {
    fileStart[i] = total;
    total += ids.length / ID_BYTES;
  });
  fileStart[files.length] = total;
  const table = new ChunkTable(total);
  const useChunk = new Int32Array(total);
  const useFile = new Int32Array(total);
  let u = 0;
  lists.forEach((ids, file) => {
    for (let at = 0; at < ids.length; at += ID_BYTES) {
      useChunk[u] = table.addBytes(ids, at);
      useFile[u++] = file;
    }
  });
  return { table, fileStart, useChunk, useFile, useOffset: new Float64Array(total), live: new Uint8Array(total).fill(1) };
}

/** Files (paths) that use any of the given chunks. */
export function filesUsing(files: readonly TreeEntry[], lookup: ChunkLookup, chunks: Iterable<number>): string[] {
  const hit = new Set<number>();
  for (const c of chunks) for (let k = lookup.chunkUseStart[c]!; k < lookup.chunkUseStart[c + 1]!; k++) hit.add(lookup.useFile[lookup.chunkUses[k]!]!);
  return [...hit].sort((a, b) => a - b).map((f) => files[f]!.path);
}

/** Size of a pack with `n` entries whose blobs end at `dataEnd` (the trailer's size is fixed by `n`; packs from before groups have 4 bytes less per entry, which only sways the whole-or-ranged choice). */
function packSize(dataEnd: number, n: number): number {
  return dataEnd + BLOB_HEADER + SEAL_OVERHEAD + 8 + n * TRAILER_ENTRY + 4;
}

/** Finds where each chunk the entries need sits, and every (file, offset) that uses it. */
export async function locateChunks(repo: Repository, files: readonly TreeEntry[], source: string): Promise<ChunkLookup> {
  const needed = neededChunks(files, source);
  const { table } = needed;
  const packInfo = new Map<number, { dataEnd: number; n: number }>();
  // A chunk also held by a pack a running garbage collection condemned (one it repacked) is read from its other pack.
  const condemned = await condemnedPacks(repo);
  const condemnedNumbers = new Set<number>();
  // Scan index objects keeping only what this backup needs: memory follows the backup, not the repository.
  // Objects are fetched a few at a time; each is scanned in place.
  const scan = (key: string, plain: Buffer) => {
    let name = '';
    let pack = -1;
    let n = 0;
    let seen = 0;
    let doomed = false;
    try {
      scanIndex(
        plain,
        (packSha, count) => {
          name = packSha;
          pack = -1;
          n = count;
          seen = 0;
          doomed = condemned.has(packSha);
        },
        (bytes, at) => {
          const c = table.find(bytes, at);
          if (c >= 0 && (table.pack[c] === -1 || (!doomed && condemnedNumbers.has(table.pack[c]!)))) {
            // A pack is numbered once it holds a needed chunk.
            if (pack < 0) {
              pack = table.packNumber(name);
              if (doomed) condemnedNumbers.add(pack);
            }
            table.pack[c] = pack;
            table.offset[c] = bytes.readUInt32BE(at + ID_BYTES);
            table.length[c] = bytes.readUInt32BE(at + ID_BYTES + 4);
            table.rawLength[c] = bytes.readUInt32BE(at + ID_BYTES + 8);
          }
          // The pack's last entry fixes where its blobs end, which sizes a whole-pack read.
          if (++seen === n && pack >= 0) packInfo.set(pack, { dataEnd: bytes.readUInt32BE(at + ID_BYTES) + bytes.readUInt32BE(at + ID_BYTES + 4), n });
        },
      );
    } catch (e) {
      throw new CorruptObjectError(key, (e as Error).message);
    }
  };
  const limit = pLimit(4);
  await withIndexRetry(async () => {
    // A retry starts over: what an earlier pass found is found again.
    table.pack.fill(-1);
    packInfo.clear();
    condemnedNumbers.clear();
    await Promise.all((await repo.listIndexKeys()).map((key) => limit(async () => scan(key, await repo.openIndexObject(key)))));
  });

  const unindexed: number[] = [];
  for (let c = 0; c < table.count; c++) if (table.pack[c] === -1) unindexed.push(c);
  // Uses grouped by chunk: counted, then placed.
  const chunkUseStart = new Int32Array(table.count + 1);
  for (let u = 0; u < needed.useChunk.length; u++) chunkUseStart[needed.useChunk[u]! + 1]!++;
  for (let c = 0; c < table.count; c++) chunkUseStart[c + 1]! += chunkUseStart[c]!;
  const chunkUses = new Int32Array(needed.useChunk.length);
  const next = chunkUseStart.slice(0, table.count);
  for (let u = 0; u < needed.useChunk.length; u++) chunkUses[next[needed.useChunk[u]!]!++] = u;
  if (unindexed.length === 0) {
    for (let f = 0; f < files.length; f++) {
      let offset = 0;
      for (let u = needed.fileStart[f]!; u < needed.fileStart[f + 1]!; u++) {
        needed.useOffset[u] = offset;
        offset += table.rawLength[needed.useChunk[u]!]!;
      }
      // A file is restored whole or not at all: its chunks must cover exactly the size the manifest gives it.
      const e = files[f]!;
      if (e.type === 'file' && e.linkTo === undefined && offset !== (e.size ?? 0)) throw new CorruptObjectError(source, `entry ${JSON.stringify(e.path)}: its chunks add up to ${offset} bytes, not its size ${e.size ?? 0}`);
    }
  }
  return { ...needed, chunkUseStart, chunkUses, unindexed, packInfo };
}

/** Uses of chunk `c` still to write. */
export function liveUses(lookup: ChunkLookup, c: number): number {
  let n = 0;
  for (let k = lookup.chunkUseStart[c]!; k < lookup.chunkUseStart[c + 1]!; k++) n += lookup.live[lookup.chunkUses[k]!]!;
  return n;
}

/** Requests that fetch every located chunk that still has uses. */
export function planFetches(lookup: ChunkLookup, opts: PlanOptions = DEFAULT_PLAN): FetchRange[] {
  const { table, packInfo } = lookup;
  const byPack: number[][] = table.packs.map(() => []);
  for (let c = 0; c < table.count; c++) if (table.pack[c]! >= 0 && liveUses(lookup, c) > 0) byPack[table.pack[c]!]!.push(c);
  const ranges: FetchRange[] = [];
  byPack.forEach((list, p) => {
    if (list.length === 0) return;
    const pack = table.packs[p]!;
    list.sort((a, b) => table.offset[a]! - table.offset[b]!);
    const info = packInfo.get(p)!;
    const size = packSize(info.dataEnd, info.n);
    let needed = 0;
    for (const c of list) needed += table.length[c]!;
    if (size <= opts.maxRequest * 2 && needed * 2 >= size) {
      ranges.push({ pack, offset: 0, length: size, whole: true, chunks: list });
      return;
    }
    let cur: FetchRange | undefined;
    for (const c of list) {
      const start = table.offset[c]!;
      const end = start + table.length[c]!;
      if (cur && start - (cur.offset + cur.length) <= opts.mergeGap && end - cur.offset <= opts.maxRequest) {
        cur.length = end - cur.offset;
        cur.chunks.push(c);
      } else {
        cur = { pack, offset: start, length: end - start, whole: false, chunks: [c] };
        ranges.push(cur);
      }
    }
  });
  return ranges;
}

/** The chunks `chunks` of a range fetched from `rangeOffset`, with their live uses, as a writer takes them. */
export function rangeChunks(lookup: ChunkLookup, chunks: readonly number[], rangeOffset: number): RangeChunks {
  const { table } = lookup;
  const n = chunks.length;
  const ids = new Uint8Array(n * ID_BYTES);
  const starts = new Uint32Array(n);
  const lengths = new Uint32Array(n);
  const rawLengths = new Uint32Array(n);
  const useCounts = new Uint32Array(n);
  let uses = 0;
  for (const c of chunks) uses += liveUses(lookup, c);
  const useFiles = new Uint32Array(uses);
  const useOffsets = new Float64Array(uses);
  let w = 0;
  chunks.forEach((c, i) => {
    ids.set(table.ids.subarray(c * ID_BYTES, (c + 1) * ID_BYTES), i * ID_BYTES);
    starts[i] = table.offset[c]! - rangeOffset;
    lengths[i] = table.length[c]!;
    rawLengths[i] = table.rawLength[c]!;
    for (let k = lookup.chunkUseStart[c]!; k < lookup.chunkUseStart[c + 1]!; k++) {
      const u = lookup.chunkUses[k]!;
      if (!lookup.live[u]) continue;
      useFiles[w] = lookup.useFile[u]!;
      useOffsets[w++] = lookup.useOffset[u]!;
      useCounts[i]!++;
    }
  });
  return { ids, starts, lengths, rawLengths, useCounts, useFiles, useOffsets };
}
