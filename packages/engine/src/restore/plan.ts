/**
 * Restore planning from the manifest graph: which chunks the backup needs,
 * where each one is used (file, offset), where each sits (pack, offset), and
 * how to fetch them — per pack, sorted ranges with neighbours merged into one
 * request, or the whole pack in one SHA-256-verified read when most of it is
 * needed anyway.
 *
 * A page stored as a delta (`format/delta-group.ts`) needs its base, and the
 * base perhaps its own: the plan adds each chain's chunks and cuts the
 * restore into phases. Phase 0 writes every chunk stored whole — for a use
 * whose chunk is a delta, the whole page its chain starts from — at the
 * use's place; phase k applies the k-th delta of each chain there, against
 * the bytes phase k − 1 left (a delta and its base always have one size).
 * Memory does not grow with the chains: the bases live in the target. When
 * the deltas fit a budget they are read ahead instead (`delta-preload.ts`)
 * and phase 0 applies them in memory, writing each place once.
 *
 * A backup of relation pages needs hundreds of thousands of chunks, so the
 * plan keeps them in parallel typed arrays beside an `IdTable`: no object,
 * string or hash-map entry per chunk or per use, which cost more to build and
 * to collect than the lookups themselves.
 */
import { BLOB_HEADER, ID_BYTES } from '../format/chunk-codec.js';
import { TRAILER_ENTRY } from '../format/pack.js';
import { MAX_CHAIN } from '../format/delta-group.js';
import { SEAL_OVERHEAD } from '../crypto/aead.js';
import { chunkIdsOf, type TreeEntry } from '../format/manifest.js';
import { withIndexRetry, type Repository } from '../repository/repository.js';
import pLimit from 'p-limit';
import { CorruptObjectError } from '../errors.js';
import { scanIndex } from '../format/index-file.js';
import { IdTable } from '../repository/id-table.js';
import { condemnedPacks } from '../repository/condemned.js';
import type { RangeChunks } from './range-writer.js';
import { stepSize, writeStep } from './delta-chains.js';

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

  /** A copy with room for `capacity` chunks: the same chunks under the same numbers, located alike. */
  grown(capacity: number): ChunkTable {
    const t = new ChunkTable(capacity);
    for (let i = 0; i < this.count; i++) t.addBytes(this.ids, i * ID_BYTES);
    for (const [to, from] of [
      [t.pack, this.pack],
      [t.offset, this.offset],
      [t.length, this.length],
      [t.rawLength, this.rawLength],
    ] as const) to.set(from.subarray(0, this.count));
    for (const sha of this.packs) t.packNumber(sha);
    return t;
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
  /** Per chunk, the chunk its delta was taken against, or -1 for a chunk stored whole. */
  base: Int32Array;
  /**
   * In a restore's phase 0, per use, the page the place ends with: `useChunk[u]` itself, or a delta whose
   * chain from `useChunk[u]` was read ahead and is applied in memory before the write (`delta-preload.ts`).
   */
  tip?: Int32Array;
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
export function neededChunks(files: readonly TreeEntry[], source: string, spare = 0): Omit<ChunkLookup, 'chunkUseStart' | 'chunkUses' | 'unindexed' | 'packInfo' | 'base'> {
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
  // `spare`: room for bases found later, as a fraction of the uses (a base is found after its delta is located).
  const table = new ChunkTable(total + Math.ceil(total * spare));
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

/** Files (paths) that use any of the given chunks, or a delta taken against one of them (`base`, when known). */
export function filesUsing(files: readonly TreeEntry[], lookup: Pick<ChunkLookup, 'chunkUseStart' | 'chunkUses' | 'useFile'> & { base?: Int32Array }, chunks: Iterable<number>): string[] {
  const wanted = new Set(chunks);
  const { base } = lookup;
  if (base?.some((b) => b >= 0)) {
    for (let c = 0; c < base.length; c++) {
      for (let b = base[c]!, d = 0; b >= 0 && d < MAX_CHAIN; b = base[b]!, d++) {
        if (wanted.has(b)) {
          wanted.add(c);
          break;
        }
      }
    }
  }
  const hit = new Set<number>();
  for (const c of wanted) for (let k = lookup.chunkUseStart[c]!; k < lookup.chunkUseStart[c + 1]!; k++) hit.add(lookup.useFile[lookup.chunkUses[k]!]!);
  return [...hit].sort((a, b) => a - b).map((f) => files[f]!.path);
}

/** Size of a pack with `n` entries whose blobs end at `dataEnd` (the trailer's size is fixed by `n`; packs from before groups have 4 bytes less per entry, which only sways the whole-or-ranged choice). */
function packSize(dataEnd: number, n: number): number {
  return dataEnd + BLOB_HEADER + SEAL_OVERHEAD + 8 + n * TRAILER_ENTRY + 4;
}

/** Finds where each chunk the entries need sits, and every (file, offset) that uses it. */
export async function locateChunks(repo: Repository, files: readonly TreeEntry[], source: string): Promise<ChunkLookup> {
  // A chunk also held by a pack a running garbage collection condemned (one it repacked) is read from its other pack.
  const condemned = await condemnedPacks(repo);
  // Each pass over the index finds the bases of the deltas found so far; a chain of k deltas takes k + 1
  // passes. Only bases are carried from pass to pass, so memory follows the backup, not the repository. A
  // pass after the first adds the new bases to the table (made larger when they do not fit) and looks for
  // them alone.
  // A pass after the first reads every index object again: the first keeps their plaintexts, up to a bound.
  const kept = new IndexKeep();
  const found: LocatePass = { needed: neededChunks(files, source, 0.25), packInfo: new Map(), baseIds: new Map(), condemnedNumbers: new Set() };
  for (let pass = 0; ; pass++) {
    await locatePass(repo, found, condemned, kept);
    const missing = new Map<string, Buffer>();
    for (const id of found.baseIds.values()) if (found.needed.table.find(id, 0) < 0) missing.set(id.toString('latin1'), id);
    if (missing.size === 0) return finishLookup(files, source, found);
    if (pass === MAX_CHAIN) throw new CorruptObjectError(source, `its pages need deltas of deltas more than ${MAX_CHAIN} deep: the index's base records form a loop or are damaged`);
    let { table } = found.needed;
    if (table.count + missing.size > table.capacity) found.needed = { ...found.needed, table: (table = table.grown(Math.ceil((table.count + missing.size) * 1.25))) };
    // The bases of deltas: needed, at no place of their own.
    for (const id of missing.values()) table.addBytes(id, 0);
  }
}

interface LocatePass {
  needed: ReturnType<typeof neededChunks>;
  packInfo: ChunkLookup['packInfo'];
  /** The base id of each located chunk stored as a delta, by chunk. */
  baseIds: Map<number, Buffer>;
  /** Numbers of the packs a running garbage collection condemned, among those holding needed chunks. */
  condemnedNumbers: Set<number>;
}

/** Index plaintexts kept between passes, at most `KEEP_BYTES` of them. */
class IndexKeep {
  private readonly plains = new Map<string, Buffer>();
  private bytes = 0;
  async open(repo: Repository, key: string): Promise<Buffer> {
    const kept = this.plains.get(key);
    if (kept) return kept;
    const plain = await repo.openIndexObject(key);
    if (this.bytes + plain.length <= KEEP_BYTES) {
      this.plains.set(key, plain);
      this.bytes += plain.length;
    }
    return plain;
  }
}

/** Index plaintexts a restore keeps for its later passes (index objects are immutable: a kept one stays true). */
const KEEP_BYTES = 64 * 1024 * 1024;

/**
 * Scans every index object for where the table's chunks not yet located sit (and, from a pack a garbage
 * collection condemned, where another copy sits), filling `found` in.
 */
async function locatePass(repo: Repository, found: LocatePass, condemned: ReadonlySet<string>, kept: IndexKeep): Promise<void> {
  const { needed, packInfo, baseIds, condemnedNumbers } = found;
  const { table } = needed;
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
            // Stored whole here, unless this pack's delta section says otherwise (it comes after the entries).
            if (baseIds.size > 0) baseIds.delete(c);
          }
          // The pack's last entry fixes where its blobs end, which sizes a whole-pack read.
          if (++seen === n && pack >= 0) packInfo.set(pack, { dataEnd: bytes.readUInt32BE(at + ID_BYTES) + bytes.readUInt32BE(at + ID_BYTES + 4), n });
        },
        (bytes, entryAt, baseAt) => {
          const c = table.find(bytes, entryAt);
          // Only the copy the chunk is read from decides how it decodes.
          if (c >= 0 && pack >= 0 && table.pack[c] === pack && table.offset[c] === bytes.readUInt32BE(entryAt + ID_BYTES)) baseIds.set(c, Buffer.from(bytes.subarray(baseAt, baseAt + ID_BYTES)));
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
    baseIds.clear();
    condemnedNumbers.clear();
    await Promise.all((await repo.listIndexKeys()).map((key) => limit(async () => scan(key, await kept.open(repo, key)))));
  });
}

/** Uses grouped by chunk: chunk `c`'s uses are `chunkUses[chunkUseStart[c]]` up to `chunkUses[chunkUseStart[c + 1]]`. */
function usesByChunk(chunks: number, useChunk: Int32Array): { chunkUseStart: Int32Array; chunkUses: Int32Array } {
  const chunkUseStart = new Int32Array(chunks + 1);
  for (let u = 0; u < useChunk.length; u++) chunkUseStart[useChunk[u]! + 1]!++;
  for (let c = 0; c < chunks; c++) chunkUseStart[c + 1]! += chunkUseStart[c]!;
  const chunkUses = new Int32Array(useChunk.length);
  const next = chunkUseStart.slice(0, chunks);
  for (let u = 0; u < useChunk.length; u++) chunkUses[next[useChunk[u]!]!++] = u;
  return { chunkUseStart, chunkUses };
}

function finishLookup(files: readonly TreeEntry[], source: string, { needed, packInfo, baseIds }: LocatePass): ChunkLookup {
  const { table } = needed;
  const unindexed: number[] = [];
  for (let c = 0; c < table.count; c++) if (table.pack[c] === -1) unindexed.push(c);
  const base = new Int32Array(table.count).fill(-1);
  for (const [c, id] of baseIds) {
    const b = table.find(id, 0);
    base[c] = b;
    // A delta is applied where its base was written: a base of another size would spill into the next place.
    if (table.pack[b] !== -1 && table.rawLength[b] !== table.rawLength[c]) throw new CorruptObjectError(source, `chunk ${table.hex(c)} is a delta of ${table.rawLength[c]} bytes against chunk ${table.hex(b)} of ${table.rawLength[b]}`);
  }
  const { chunkUseStart, chunkUses } = usesByChunk(table.count, needed.useChunk);
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
  return { ...needed, chunkUseStart, chunkUses, unindexed, packInfo, base };
}

/** Per chunk, how many deltas deep it is (0: stored whole); a chain past `MAX_CHAIN` is damaged. */
export function chainDepths(lookup: Pick<ChunkLookup, 'table' | 'base'>, source: string): Uint8Array {
  const { table, base } = lookup;
  const depth = new Uint8Array(table.count);
  for (let c = 0; c < table.count; c++) {
    let d = 0;
    for (let b = base[c]!; b >= 0; b = base[b]!) if (++d > MAX_CHAIN) throw new CorruptObjectError(source, `chunk ${table.hex(c)} is a delta at the end of a chain longer than ${MAX_CHAIN}: the index's base records form a loop`);
    depth[c] = d;
  }
  return depth;
}

/**
 * The restore's phases (see the module comment): one lookup per step of the
 * longest chain, each with the same chunks and places, and as uses the live
 * places whose chain reaches that step. A place whose deltas were all read
 * ahead (`inMemory`) is written once, in phase 0, with its final page as
 * `tip`. Without deltas, `lookup` alone.
 */
export function restorePhases(lookup: ChunkLookup, source: string, inMemory: (c: number) => boolean = () => false): ChunkLookup[] {
  const { table, base } = lookup;
  if (!base.some((b) => b >= 0)) return [lookup];
  const depth = chainDepths(lookup, source);
  /** Per chunk: 1 when its whole chain is applied in memory. */
  const fused = new Uint8Array(table.count);
  for (let c = 0; c < table.count; c++) {
    if (depth[c] === 0) continue;
    let all = true;
    for (let d = c; base[d]! >= 0 && all; d = base[d]!) all = inMemory(d);
    fused[c] = all ? 1 : 0;
  }
  let deepest = 0;
  for (let u = 0; u < lookup.useChunk.length; u++) {
    const c = lookup.useChunk[u]!;
    if (lookup.live[u] && !fused[c]) deepest = Math.max(deepest, depth[c]!);
  }
  const phases: ChunkLookup[] = [];
  for (let p = 0; p <= deepest; p++) {
    const useChunk: number[] = [];
    const useTip: number[] = [];
    const useFile: number[] = [];
    const useOffset: number[] = [];
    const fileStart = new Int32Array(lookup.fileStart.length);
    for (let f = 0; f + 1 < lookup.fileStart.length; f++) {
      fileStart[f] = useChunk.length;
      for (let u = lookup.fileStart[f]!; u < lookup.fileStart[f + 1]!; u++) {
        if (!lookup.live[u]) continue;
        const tip = lookup.useChunk[u]!;
        let c = tip;
        if (fused[tip]) {
          if (p > 0) continue;
          while (base[c]! >= 0) c = base[c]!;
        } else {
          if (depth[c]! < p) continue;
          for (let up = depth[c]! - p; up > 0; up--) c = base[c]!;
        }
        useChunk.push(c);
        useTip.push(fused[tip] ? tip : c);
        useFile.push(f);
        useOffset.push(lookup.useOffset[u]!);
      }
    }
    fileStart[fileStart.length - 1] = useChunk.length;
    const chunks = Int32Array.from(useChunk);
    phases.push({
      ...lookup,
      fileStart,
      useChunk: chunks,
      useFile: Int32Array.from(useFile),
      useOffset: Float64Array.from(useOffset),
      live: new Uint8Array(chunks.length).fill(1),
      ...usesByChunk(table.count, chunks),
      ...(p === 0 ? { tip: Int32Array.from(useTip) } : {}),
    });
  }
  return phases;
}

/**
 * Per chunk, 1 when a live use's chain starts from it: what phase 0 writes,
 * whether the deltas are then applied in memory or phase by phase.
 */
export function chainRoots(lookup: ChunkLookup, source: string): Uint8Array {
  const { table, base } = lookup;
  // Damaged base records that loop fail here, before anything is walked.
  chainDepths(lookup, source);
  const roots = new Uint8Array(table.count);
  for (let u = 0; u < lookup.useChunk.length; u++) {
    if (!lookup.live[u]) continue;
    let c = lookup.useChunk[u]!;
    while (base[c]! >= 0) c = base[c]!;
    roots[c] = 1;
  }
  return roots;
}

/** Uses of chunk `c` still to write. */
export function liveUses(lookup: ChunkLookup, c: number): number {
  let n = 0;
  for (let k = lookup.chunkUseStart[c]!; k < lookup.chunkUseStart[c + 1]!; k++) n += lookup.live[lookup.chunkUses[k]!]!;
  return n;
}

/** Requests that fetch every located chunk that still has uses (or, with `want`, every located chunk it names). */
export function planFetches(lookup: ChunkLookup, opts: PlanOptions = DEFAULT_PLAN, want: (c: number) => boolean = (c) => liveUses(lookup, c) > 0): FetchRange[] {
  const { table, packInfo } = lookup;
  const byPack: number[][] = table.packs.map(() => []);
  for (let c = 0; c < table.count; c++) if (table.pack[c]! >= 0 && want(c)) byPack[table.pack[c]!]!.push(c);
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

/**
 * The chunks `chunks` of a range fetched from `rangeOffset`, with their live
 * uses, as a writer takes them; with the chains of deltas the uses apply in
 * memory (`lookup.tip`), whose frames `frameOf` gives.
 */
export function rangeChunks(lookup: ChunkLookup, chunks: readonly number[], rangeOffset: number, frameOf?: (c: number) => Uint8Array | undefined): RangeChunks {
  const { table, tip, base } = lookup;
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
  /** Use `u`'s chain, tip first. */
  const chainOf = (u: number, c: number): number[] => {
    const steps: number[] = [];
    if (tip && frameOf) for (let t = tip[u]!; t !== c; t = base[t]!) steps.push(t);
    return steps;
  };
  let chainBytes = 0;
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
      for (const t of chainOf(u, c)) chainBytes += stepSize(frameOf!(t)!);
    }
  });
  const out: RangeChunks = { ids, starts, lengths, rawLengths, useCounts, useFiles, useOffsets };
  if (chainBytes === 0) return out;
  // A second walk in the same order lays the steps out, each chain from the page stored whole to the tip.
  const chains = { starts: new Uint32Array(uses + 1), bytes: new Uint8Array(chainBytes) };
  const into = Buffer.from(chains.bytes.buffer);
  let at = 0;
  w = 0;
  for (const c of chunks) {
    for (let k = lookup.chunkUseStart[c]!; k < lookup.chunkUseStart[c + 1]!; k++) {
      const u = lookup.chunkUses[k]!;
      if (!lookup.live[u]) continue;
      chains.starts[w] = at;
      for (const t of chainOf(u, c).reverse()) at = writeStep(into, at, table.id(t), table.id(base[t]!), table.rawLength[t]!, frameOf!(t)!);
      chains.starts[++w] = at;
    }
  }
  return { ...out, chains };
}
