/**
 * One file through the pipeline: read → chunk → id → (only for chunks the
 * repository lacks) compress → seal. The same function runs inline or inside
 * a worker thread; `ChunkSink` is how it asks which chunks are new and hands
 * over sealed ones, so dedup state stays in one place.
 */
import { open } from 'node:fs/promises';
import { StreamingChunker, type ChunkerParams } from '../chunking/chunker.js';
import type { ChunkCodec } from '../format/chunk-codec.js';
import type { SealedChunk } from './pack-writer.js';

export interface ChunkSink {
  /** Which of these chunks must be stored (each id answered `true` at most once repository-wide). */
  claim(ids: Buffer[]): Promise<boolean[]>;
  store(chunks: SealedChunk[]): Promise<void>;
}

export interface FileChunks {
  /** Chunk ids, hex, in file order. */
  chunks: string[];
  size: number;
}

export const READ_SIZE = 4 * 1024 * 1024;

export async function chunkFile(path: string, params: ChunkerParams, codec: ChunkCodec, sink: ChunkSink): Promise<FileChunks> {
  const fh = await open(path, 'r');
  const chunker = new StreamingChunker(params);
  const ids: string[] = [];
  let size = 0;
  try {
    const read = () => fh.read(Buffer.allocUnsafe(READ_SIZE), 0, READ_SIZE, null);
    let next = read();
    for (;;) {
      const { bytesRead, buffer } = await next;
      if (bytesRead === 0) break;
      next = read(); // overlap the next read with this batch's CPU work
      size += bytesRead;
      await processBatch(chunker.push(buffer.subarray(0, bytesRead)), codec, sink, ids);
    }
    await processBatch(chunker.finish(), codec, sink, ids);
  } finally {
    await fh.close();
  }
  return { chunks: ids, size };
}

async function processBatch(pieces: Buffer[], codec: ChunkCodec, sink: ChunkSink, ids: string[]): Promise<void> {
  if (pieces.length === 0) return;
  const batchIds = pieces.map((p) => codec.id(p));
  for (const id of batchIds) ids.push(id.toString('hex'));
  const needed = await sink.claim(batchIds);
  const sealed: SealedChunk[] = [];
  for (let i = 0; i < pieces.length; i++) {
    if (!needed[i]) continue;
    const piece = pieces[i]!;
    sealed.push({ id: batchIds[i]!, blob: codec.encode(batchIds[i]!, piece), rawLength: piece.length });
  }
  if (sealed.length > 0) await sink.store(sealed);
}
