/**
 * Restore planning from the manifest graph: which chunks the backup needs,
 * where each one is used (file, offset), where each sits (pack, offset), and
 * how to fetch them — per pack, sorted ranges with neighbours merged into one
 * request, or the whole pack in one SHA-256-verified read when most of it is
 * needed anyway.
 */
import { BLOB_HEADER, ID_BYTES } from '../format/chunk-codec.js';
import { TRAILER_ENTRY } from '../format/pack.js';
import { SEAL_OVERHEAD } from '../crypto/aead.js';
import type { TreeEntry } from '../format/manifest.js';
import type { Repository } from '../repository/repository.js';
import pLimit from 'p-limit';
import { CorruptObjectError } from '../errors.js';
import { scanIndex } from '../format/index-file.js';

export interface ChunkUse {
  file: number;
  offset: number;
}

export interface NeededChunk {
  id: Buffer;
  uses: ChunkUse[];
  rawLength: number;
  pack?: string;
  offset?: number;
  length?: number;
}

export interface FetchRange {
  pack: string;
  /** Byte range inside the pack; `whole` means the entire object is read and checked against its name. */
  offset: number;
  length: number;
  whole: boolean;
  chunks: NeededChunk[];
}

export interface ChunkLookup {
  chunks: Map<string, NeededChunk>;
  /** Chunks no index lists. */
  unindexed: NeededChunk[];
  /** Per pack holding needed chunks: where its blobs end and how many it has (fixes its size). */
  packInfo: Map<string, { dataEnd: number; n: number }>;
}

export interface PlanOptions {
  /** Merge ranges separated by at most this many unneeded bytes. */
  mergeGap: number;
  /** Largest single request. */
  maxRequest: number;
}

export const DEFAULT_PLAN: PlanOptions = { mergeGap: 256 * 1024, maxRequest: 16 * 1024 * 1024 };

/** The distinct chunks the given entries reference, with no locations or uses yet. */
export function neededChunks(files: readonly TreeEntry[]): Map<string, NeededChunk> {
  const chunks = new Map<string, NeededChunk>();
  for (const f of files) {
    // Keyed by the manifest's own hex text: no conversion per use, one Buffer per distinct chunk.
    for (const hex of f.chunks ?? []) if (!chunks.has(hex)) chunks.set(hex, { id: Buffer.from(hex, 'hex'), uses: [], rawLength: -1 });
  }
  return chunks;
}

/** Files (paths) that reference any of `ids`. */
export function filesUsing(files: readonly TreeEntry[], ids: Iterable<Uint8Array>): string[] {
  const wanted = new Set([...ids].map((id) => Buffer.from(id).toString('hex')));
  return files.filter((f) => f.chunks?.some((c) => wanted.has(c))).map((f) => f.path);
}

/** Size of a pack with `n` entries whose blobs end at `dataEnd` (the trailer's size is fixed by `n`; packs from before groups have 4 bytes less per entry, which only sways the whole-or-ranged choice). */
function packSize(dataEnd: number, n: number): number {
  return dataEnd + BLOB_HEADER + SEAL_OVERHEAD + 8 + n * TRAILER_ENTRY + 4;
}

/** Finds where each chunk the entries need sits, and every (file, offset) that uses it. */
export async function locateChunks(repo: Repository, files: readonly TreeEntry[]): Promise<ChunkLookup> {
  const chunks = neededChunks(files);
  const packInfo = new Map<string, { dataEnd: number; n: number }>();
  // Scan index objects keeping only what this backup needs: memory follows the backup, not the repository.
  // Objects are fetched a few at a time; each is scanned in place, without an object per entry.
  const scan = (key: string, plain: Buffer) => {
    let sha = '';
    let n = 0;
    let seen = 0;
    let hit = false;
    try {
      scanIndex(
        plain,
        (packSha, count) => {
          sha = packSha;
          n = count;
          seen = 0;
          hit = false;
        },
        (bytes, at) => {
          const c = chunks.get(bytes.toString('hex', at, at + ID_BYTES));
          if (c && c.pack === undefined) {
            c.pack = sha;
            c.offset = bytes.readUInt32BE(at + ID_BYTES);
            c.length = bytes.readUInt32BE(at + ID_BYTES + 4);
            c.rawLength = bytes.readUInt32BE(at + ID_BYTES + 8);
            hit = true;
          }
          // The pack's last entry fixes where its blobs end, which sizes a whole-pack read.
          if (++seen === n && hit) packInfo.set(sha, { dataEnd: bytes.readUInt32BE(at + ID_BYTES) + bytes.readUInt32BE(at + ID_BYTES + 4), n });
        },
      );
    } catch (e) {
      throw new CorruptObjectError(key, (e as Error).message);
    }
  };
  const limit = pLimit(4);
  await Promise.all((await repo.listIndexKeys()).map((key) => limit(async () => scan(key, await repo.openIndexObject(key)))));
  const unindexed = [...chunks.values()].filter((c) => c.pack === undefined);
  if (unindexed.length === 0) fillOffsets(files, chunks);
  return { chunks, unindexed, packInfo };
}

/** Requests that fetch every located chunk that still has uses. */
export function planFetches({ chunks, packInfo }: ChunkLookup, opts: PlanOptions = DEFAULT_PLAN): FetchRange[] {
  const byPack = new Map<string, NeededChunk[]>();
  for (const c of chunks.values()) {
    if (c.pack === undefined || c.uses.length === 0) continue;
    let list = byPack.get(c.pack);
    if (!list) byPack.set(c.pack, (list = []));
    list.push(c);
  }
  const ranges: FetchRange[] = [];
  for (const [pack, list] of byPack) {
    list.sort((a, b) => a.offset! - b.offset!);
    const info = packInfo.get(pack)!;
    const size = packSize(info.dataEnd, info.n);
    const needed = list.reduce((n, c) => n + c.length!, 0);
    if (size <= opts.maxRequest * 2 && needed * 2 >= size) {
      ranges.push({ pack, offset: 0, length: size, whole: true, chunks: list });
      continue;
    }
    let cur: FetchRange | undefined;
    for (const c of list) {
      const end = c.offset! + c.length!;
      if (cur && c.offset! - (cur.offset + cur.length) <= opts.mergeGap && end - cur.offset <= opts.maxRequest) {
        cur.length = end - cur.offset;
        cur.chunks.push(c);
      } else {
        cur = { pack, offset: c.offset!, length: c.length!, whole: false, chunks: [c] };
        ranges.push(cur);
      }
    }
  }
  return ranges;
}

function fillOffsets(files: readonly TreeEntry[], chunks: Map<string, NeededChunk>): void {
  files.forEach((f, file) => {
    let offset = 0;
    for (const hex of f.chunks ?? []) {
      const c = chunks.get(hex)!;
      c.uses.push({ file, offset });
      offset += c.rawLength;
    }
  });
}
