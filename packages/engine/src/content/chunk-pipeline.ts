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
import { sealInGroups, type SealedBlob } from './sealed-groups.js';

export interface ChunkSink {
  /**
   * Which of these chunks must be stored (each id answered `true` at most once
   * repository-wide). `bytes` is their plaintext size, for progress.
   */
  claim(ids: Buffer[], bytes: number, pages: boolean): Promise<boolean[]>;
  /** Takes sealed blobs; must copy them before resolving (they are reused afterwards). */
  store(blobs: SealedBlob[], pages: boolean): Promise<void>;
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

export async function chunkFile(path: string, chunking: Chunking, codec: ChunkCodec, sink: ChunkSink, readCheck?: ReadCheckSpec, range?: FileRange, pacer?: ReadPacer): Promise<FileChunks> {
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
      await processBatch(batch, codec, sink, ids, pageChunks, groupBytes);
    }
    await processBatch(chunker.finish(), codec, sink, ids, pageChunks, groupBytes);
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
 * many bytes, compressed together.
 */
async function processBatch(pieces: Buffer[], codec: ChunkCodec, sink: ChunkSink, ids: Buffer[], pages: boolean, groupBytes: number): Promise<void> {
  if (pieces.length === 0) return;
  const batchIds = pieces.map((p) => codec.id(p));
  ids.push(...batchIds);
  const needed = await sink.claim(batchIds, pieces.reduce((n, p) => n + p.length, 0), pages);
  codec.startBatch(); // the previous batch's blobs were copied out by sink.store
  const newIds: Buffer[] = [];
  const newPieces: Buffer[] = [];
  for (let i = 0; i < pieces.length; i++) {
    if (!needed[i]) continue;
    newIds.push(batchIds[i]!);
    newPieces.push(pieces[i]!);
  }
  if (newPieces.length > 0) await sink.store(sealInGroups(codec, newIds, newPieces, groupBytes), pages);
}
