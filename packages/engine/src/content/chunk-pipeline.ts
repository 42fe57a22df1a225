/**
 * One file through the pipeline: read → chunk → id → (only for chunks the
 * repository lacks) compress → seal. The same function runs inline or inside
 * a worker thread; `ChunkSink` is how it asks which chunks are new and hands
 * over sealed ones, so dedup state stays in one place. What a source knows
 * about its files (PostgreSQL's page checksums) comes in as a read check.
 */
import type { ReadPacer } from './read-pacer.js';
import { fsPath } from '../names.js';
import { open, type FileHandle } from 'node:fs/promises';
import { BufferPool } from '../buffer-pool.js';
import { createChunker, type Chunking } from '../chunking/chunker.js';
import type { ChunkCodec } from '../format/chunk-codec.js';
import { loadReadCheck, type CheckedFile, type ReadCheckSpec } from './read-check.js';
import { sealDeltaGroups, sealInGroups, type SealedBlob } from './sealed-groups.js';
import type { DeltaMember } from '../format/delta-group.js';

export interface ChunkSink {
  /**
   * Which of these chunks must be stored (each id answered `true` at most once
   * repository-wide). `bytes` is their plaintext size, for progress.
   */
  claim(ids: Buffer[], bytes: number, pages: boolean): Promise<boolean[]>;
  /** Takes sealed blobs; must copy them before resolving (they are reused afterwards). */
  store(blobs: SealedBlob[], pages: boolean): Promise<void>;
  /**
   * For new pages of the file the parent backup knew as `place`, at these
   * block numbers: where the page each may be stored as a delta against (its
   * previous version) is read from. Absent: no deltas.
   */
  bases?(place: string, blocks: number[]): Promise<BaseChains>;
}

/**
 * The previous versions of some pages, as the sealed blobs that hold them:
 * each page's chain from the version stored whole to the page itself. The
 * thread that asked decodes them (so that a backup's threads share the work),
 * and every step is checked against its id as it is decoded.
 */
export interface BaseChains {
  /** Sealed blobs, back to back; blob `b` is `data[bounds[b], bounds[b + 1])`. */
  data: Uint8Array;
  bounds: number[];
  /** Per block asked, how many steps its chain has (0: no base). */
  steps: number[];
  /** Per step, in order (each chain from its root): its chunk id, 32 bytes, and its blob. */
  ids: Uint8Array;
  blobs: number[];
}

/** A page's previous version, to store the new one as a delta against. */
export interface PageBase {
  id: Uint8Array;
  page: Uint8Array;
}

/** No base for any of `n` blocks. */
export function noBases(n: number): BaseChains {
  return { data: new Uint8Array(0), bounds: [0], steps: new Array<number>(n).fill(0), ids: new Uint8Array(0), blobs: [] };
}

/** The pages `chains` lead to, decoded and checked; a chain that does not decode gives no base (the page is stored whole). */
export function decodeBases(codec: ChunkCodec, chains: BaseChains): (PageBase | undefined)[] {
  const data = Buffer.from(chains.data.buffer, chains.data.byteOffset, chains.data.byteLength);
  const ids = Buffer.from(chains.ids.buffer, chains.ids.byteOffset, chains.ids.byteLength);
  const blob = (b: number) => data.subarray(chains.bounds[b]!, chains.bounds[b + 1]!);
  let step = 0;
  return chains.steps.map((n) => {
    let page: Buffer | string | undefined;
    let id: Buffer | undefined;
    for (let k = 0; k < n; k++, step++) {
      id = ids.subarray(step * 32, step * 32 + 32);
      if (typeof page === 'string') continue;
      page = k === 0 ? codec.decode(id, blob(chains.blobs[step]!)) : codec.decodeDelta(id, blob(chains.blobs[step]!), page!);
    }
    return page !== undefined && typeof page !== 'string' ? { id: id!, page } : undefined;
  });
}

export interface FileChunks {
  /** Chunk ids in file order, 32 bytes each. */
  ids: Buffer;
  size: number;
  /** Blocks the read check found damaged (stored as read), when it found any. */
  damaged?: number[];
}

export const READ_SIZE = 4 * 1024 * 1024;

/** Read buffers, reused from file to file (each file reads into two, alternately; a thread reads up to four files at once). */
const readBuffers = new BufferPool(8);

/** Part of a file: `length` bytes from `start` (`undefined`: to the end). Only fixed chunking may split a file, at a multiple of its chunk size. */
export interface FileRange {
  start: number;
  length?: number;
}

/**
 * Chunks, ids, and seals what the repository lacks of one file (or `range`
 * of it). With `place` — the file's path in the parent backup — a page
 * chunker asks the sink for the previous versions of new pages, and stores
 * each as a delta where that is smaller than the page compressed alone.
 */
export async function chunkFile(path: string, chunking: Chunking, codec: ChunkCodec, sink: ChunkSink, readCheck?: ReadCheckSpec, range?: FileRange, pacer?: ReadPacer, place?: string): Promise<FileChunks> {
  if (range && range.start > 0 && (chunking.algorithm !== 'fixed' || range.start % chunking.size !== 0)) {
    throw new RangeError(`a file can be split only at a multiple of a fixed chunk size (start ${range.start})`);
  }
  const fh = await open(fsPath(path), 'r');
  const chunker = createChunker(chunking);
  // Only small fixed chunks gain from sharing a compression frame; FastCDC chunks are large enough alone.
  const pageChunks = chunking.algorithm === 'fixed';
  const groupBytes = pageChunks ? (chunking.groupBytes ?? 0) : 0;
  const ids: Buffer[] = [];
  const buffers = [readBuffers.take(READ_SIZE), readBuffers.take(READ_SIZE)];
  let size = 0;
  let turn = 0;
  let position = range?.start ?? 0;
  const end = range?.length === undefined ? Infinity : position + range.length;
  // A read shorter than asked is the end of the file: nothing after it is read (a file that grows again later is WAL replay's business).
  let atEnd = false;
  const read = async () => {
    const buffer = buffers[turn++ % 2]!;
    const want = atEnd ? 0 : Math.min(buffer.length, end - position);
    const at = position;
    position += want;
    if (want === 0) return { bytesRead: 0, buffer };
    const r = await fh.read(buffer, 0, want, at);
    // Paid for after the read, by what it read: a small file read into a large buffer costs its own size.
    if (pacer) await pacer.take(r.bytesRead);
    if (r.bytesRead < want) atEnd = true;
    return r;
  };
  let next = read();
  let damaged: number[] | undefined;
  // Where the next batch starts, in blocks of the file (fixed chunking only: pages).
  const deltas = pageChunks && place !== undefined && sink.bases ? { place, block: (range?.start ?? 0) / chunking.size } : undefined;
  try {
    const checker = readCheck ? (await loadReadCheck(readCheck))(readCheck.options, checkedFile(fh), range?.start ?? 0) : undefined;
    for (;;) {
      const { bytesRead, buffer } = await next;
      if (bytesRead === 0) break;
      await checker?.check(buffer.subarray(0, bytesRead));
      // The chunker copies what it keeps, so the other buffer can be read into
      // while this batch is hashed, compressed and sealed.
      const batch = chunker.push(buffer.subarray(0, bytesRead));
      next = read();
      size += bytesRead;
      await processBatch(batch, codec, sink, ids, pageChunks, groupBytes, deltas);
    }
    await processBatch(chunker.finish(), codec, sink, ids, pageChunks, groupBytes, deltas);
    damaged = checker?.damaged?.();
  } finally {
    // No read may still be filling a buffer when it goes back to the pool.
    await next.catch(() => undefined);
    await fh.close();
    for (const b of buffers) readBuffers.give(b);
    chunker.release?.();
  }
  return { ids: Buffer.concat(ids), size, ...(damaged && damaged.length > 0 ? { damaged } : {}) };
}

function checkedFile(fh: FileHandle): CheckedFile {
  return {
    async read(position, length) {
      const buf = Buffer.alloc(length);
      const { bytesRead } = await fh.read(buf, 0, length, position);
      return buf.subarray(0, bytesRead);
    },
  };
}

/**
 * Ids for a batch of chunks, then the new ones sealed: one blob each, or —
 * with `groupBytes` — the new chunks of the batch in groups of up to that
 * many bytes, compressed together. With `deltas`, new pages whose previous
 * version the sink gives are sealed as delta groups where that is smaller.
 */
async function processBatch(pieces: Buffer[], codec: ChunkCodec, sink: ChunkSink, ids: Buffer[], pages: boolean, groupBytes: number, deltas: { place: string; block: number } | undefined): Promise<void> {
  if (pieces.length === 0) return;
  const batchIds = pieces.map((p) => codec.id(p));
  ids.push(...batchIds);
  const first = deltas?.block ?? 0;
  if (deltas) deltas.block += pieces.length;
  const needed = await sink.claim(batchIds, pieces.reduce((n, p) => n + p.length, 0), pages);
  const fresh: number[] = [];
  for (let i = 0; i < pieces.length; i++) if (needed[i]) fresh.push(i);
  if (fresh.length === 0) return;
  const bases = deltas ? decodeBases(codec, await sink.bases!(deltas.place, fresh.map((i) => first + i))) : [];
  codec.startBatch(); // the previous batch's blobs were copied out by sink.store
  const newIds: Buffer[] = [];
  const newPieces: Buffer[] = [];
  const members: DeltaMember[] = [];
  fresh.forEach((i, k) => {
    const base = bases[k];
    const page = pieces[i]!;
    // A delta is kept when it is smaller than the page compressed on its own (a group compresses a little better
    // still). One of at most 1/16 of the page is kept without asking: pages alone compress less than that, but for
    // nearly empty ones, whose few bytes either way do not matter.
    let frame = base && base.page.byteLength === page.length ? codec.deltaOf(page, base.page) : undefined;
    if (frame && frame.length > page.length / 16 && frame.length >= codec.compress(page).length) frame = undefined;
    if (frame) members.push({ id: batchIds[i]!, base: base!.id, rawLength: page.length, frame });
    else {
      newIds.push(batchIds[i]!);
      newPieces.push(page);
    }
  });
  const blobs = newPieces.length > 0 ? sealInGroups(codec, newIds, newPieces, groupBytes) : [];
  if (members.length > 0) blobs.push(...sealDeltaGroups(codec, members, groupBytes));
  await sink.store(blobs, pages);
}
