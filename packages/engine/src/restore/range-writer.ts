/**
 * The inner loop of a restore, shared by the main thread and restore
 * workers: the chunks of one fetched pack range are opened (AEAD tag, chunk
 * id) one after another and written to every place that uses them. Small
 * chunks that continue each other in a file (pages) are gathered into one
 * write; a chunk is written only after it verified.
 */
import type { ChunkCodec } from '../format/chunk-codec.js';

export interface RangeChunk {
  id: Buffer;
  /** Where its blob lies in the fetched bytes. */
  start: number;
  length: number;
  rawLength: number;
  uses: { file: number; offset: number }[];
}

export interface RangeWriter {
  /** Writes `data` at `offset` of `file`: `uses` chunk uses of that file done. */
  write(file: number, data: Uint8Array, offset: number, uses: number): Promise<void>;
}

/** Chunks up to this size are copied into runs of consecutive bytes of a file, written once per run of up to `WRITE_RUN` bytes. */
const SMALL_CHUNK = 32 * 1024;
const WRITE_RUN = 1024 * 1024;

/** Returns the reason the first chunk that fails verification is corrupt, or undefined when all were written. */
export async function writeRange(codec: ChunkCodec, data: Buffer, chunks: readonly RangeChunk[], out: RangeWriter, onChunk?: (bytes: number) => void): Promise<string | undefined> {
  // One decompression buffer per range, reused chunk after chunk (writes are awaited in turn).
  const scratch = Buffer.allocUnsafeSlow(Math.max(1, ...chunks.map((c) => c.rawLength)));
  const run = { file: -1, offset: 0, length: 0, uses: 0, buf: undefined as Buffer | undefined };
  const flush = async () => {
    if (run.uses === 0) return;
    await out.write(run.file, run.buf!.subarray(0, run.length), run.offset, run.uses);
    run.uses = run.length = 0;
  };
  for (const c of chunks) {
    const plain = codec.decode(c.id, data.subarray(c.start, c.start + c.length), scratch);
    if (typeof plain === 'string') return plain;
    for (const u of c.uses) {
      if (plain.length > SMALL_CHUNK) {
        await flush();
        await out.write(u.file, plain, u.offset, 1);
      } else {
        if (run.uses > 0 && (run.file !== u.file || run.offset + run.length !== u.offset || run.length + plain.length > WRITE_RUN)) await flush();
        if (run.uses === 0) {
          run.file = u.file;
          run.offset = u.offset;
        }
        run.buf ??= Buffer.allocUnsafe(WRITE_RUN);
        plain.copy(run.buf, run.length);
        run.length += plain.length;
        run.uses++;
      }
    }
    onChunk?.(plain.length * c.uses.length);
  }
  await flush();
  return undefined;
}
