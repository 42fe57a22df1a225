/**
 * One file through the pipeline: read → chunk → id → (only for chunks the
 * repository lacks) compress → seal. The same function runs inline or inside
 * a worker thread; `ChunkSink` is how it asks which chunks are new and hands
 * over sealed ones, so dedup state stays in one place.
 */
import { fsPath } from '../names.js';
import { open, type FileHandle } from 'node:fs/promises';
import { BadPageError } from '../errors.js';
import { badPages, BLCKSZ } from '../postgres/page-checksum.js';
import { createChunker, type Chunking } from '../chunking/chunker.js';
import type { ChunkCodec } from '../format/chunk-codec.js';
import type { SealedBlob } from './pack-writer.js';

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
}

export const READ_SIZE = 4 * 1024 * 1024;

/** Page checks for a PostgreSQL relation file read with data checksums on. */
export interface PageVerify {
  /** Path named in errors (relative to the data directory). */
  label: string;
  /** Relation block number of the file's first page. */
  firstBlock: number;
  /** Pages with an LSN at or past the backup's start are not judged (WAL replay rewrites them). */
  startLsn: bigint;
}

/** Two read buffers per thread, reused from file to file: reads alternate between them. */
const spare: Buffer[] = [];
function takeBuffer(): Buffer {
  return spare.pop() ?? Buffer.allocUnsafeSlow(READ_SIZE);
}

/** Part of a file: `length` bytes from `start` (`undefined`: to the end). Only fixed chunking may split a file, at a multiple of its chunk size. */
export interface FileRange {
  start: number;
  length?: number;
}

export async function chunkFile(path: string, chunking: Chunking, codec: ChunkCodec, sink: ChunkSink, verify?: PageVerify, range?: FileRange): Promise<FileChunks> {
  if (range && range.start > 0 && (chunking.algorithm !== 'fixed' || range.start % chunking.size !== 0)) {
    throw new RangeError(`a file can be split only at a multiple of a fixed chunk size (start ${range.start})`);
  }
  const fh = await open(fsPath(path), 'r');
  const chunker = createChunker(chunking);
  // Only small fixed chunks gain from sharing a compression frame; FastCDC chunks are large enough alone.
  const pageChunks = chunking.algorithm === 'fixed';
  const groupBytes = pageChunks ? (chunking.groupBytes ?? 0) : 0;
  const ids: Buffer[] = [];
  const buffers = [takeBuffer(), takeBuffer()];
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
    if (r.bytesRead < want) atEnd = true;
    return r;
  };
  let next = read();
  const pages = verify ? new PageChecker(verify, fh, (range?.start ?? 0) / BLCKSZ) : undefined;
  try {
    for (;;) {
      const { bytesRead, buffer } = await next;
      if (bytesRead === 0) break;
      await pages?.check(buffer.subarray(0, bytesRead));
      // The chunker copies what it keeps, so the other buffer can be read into
      // while this batch is hashed, compressed and sealed.
      const batch = chunker.push(buffer.subarray(0, bytesRead));
      next = read();
      size += bytesRead;
      await processBatch(batch, codec, sink, ids, pageChunks, groupBytes);
    }
    await processBatch(chunker.finish(), codec, sink, ids, pageChunks, groupBytes);
  } finally {
    // No read may still be filling a buffer when it goes back to the pool.
    await next.catch(() => undefined);
    await fh.close();
    spare.push(...buffers);
  }
  return { ids: Buffer.concat(ids), size };
}

/**
 * Checks whole pages as they are read. A page that fails is read again once
 * on its own: PostgreSQL may have been writing it (a torn read), and the
 * second read then shows a good page or one past the start LSN.
 */
class PageChecker {
  private carry = Buffer.alloc(0);
  private block: number;
  constructor(
    private readonly verify: PageVerify,
    private readonly fh: FileHandle,
    skipBlocks = 0,
  ) {
    this.block = verify.firstBlock + skipBlocks;
  }

  async check(data: Buffer): Promise<void> {
    const buf = this.carry.length ? Buffer.concat([this.carry, data]) : data;
    const whole = buf.length - (buf.length % BLCKSZ);
    for (const block of badPages(buf.subarray(0, whole), this.block, this.verify.startLsn)) {
      const again = Buffer.alloc(BLCKSZ);
      const { bytesRead } = await this.fh.read(again, 0, BLCKSZ, (block - this.verify.firstBlock) * BLCKSZ);
      if (bytesRead === BLCKSZ && badPages(again, block, this.verify.startLsn).length > 0) throw new BadPageError(this.verify.label, block);
    }
    this.block += whole / BLCKSZ;
    this.carry = Buffer.from(buf.subarray(whole));
  }
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
  const sealed: SealedBlob[] = [];
  let groupIds: Buffer[] = [];
  let group: Buffer[] = [];
  let groupLength = 0;
  const flush = () => {
    if (group.length === 0) return;
    const blob = group.length === 1 ? codec.encode(groupIds[0]!, group[0]!) : codec.encodeGroup(groupIds, group);
    sealed.push({ blob, chunks: group.map((p, i) => ({ id: groupIds[i]!, rawLength: p.length })) });
    groupIds = [];
    group = [];
    groupLength = 0;
  };
  for (let i = 0; i < pieces.length; i++) {
    if (!needed[i]) continue;
    const piece = pieces[i]!;
    if (groupLength > 0 && groupLength + piece.length > groupBytes) flush();
    groupIds.push(batchIds[i]!);
    group.push(piece);
    groupLength += piece.length;
  }
  flush();
  if (sealed.length > 0) await sink.store(sealed, pages);
}
