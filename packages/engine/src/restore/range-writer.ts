/**
 * The inner loop of a restore, shared by the main thread and restore
 * workers: the chunks of one fetched pack range are opened (AEAD tag, chunk
 * id) one after another and written to every place that uses them. Small
 * chunks that continue each other in a file (pages) are gathered into one
 * write; a chunk is written only after it verified. In a restore's delta
 * phases (`plan.ts`) each chunk is a page delta, applied against the bytes
 * its first place holds (its base, written by the phase before). Deltas
 * read ahead come with the range (`chains`) and are applied in memory to a
 * chunk before it is written at a place.
 */
import { ID_BYTES, type ChunkCodec } from '../format/chunk-codec.js';
import { readStep, type DeltaChains } from './delta-chains.js';

/**
 * The chunks of one fetched range and where each goes, as parallel arrays
 * (they cross to worker threads as they are): chunk `i` has its id at
 * `ids[32i, 32i + 32)`, its blob at `starts[i]` of the fetched bytes, and the
 * next `useCounts[i]` entries of `useFiles`/`useOffsets` as its uses.
 */
export interface RangeChunks {
  ids: Uint8Array;
  starts: Uint32Array;
  lengths: Uint32Array;
  rawLengths: Uint32Array;
  useCounts: Uint32Array;
  useFiles: Uint32Array;
  useOffsets: Float64Array;
  /** Every chunk is a page delta against what its places hold now. */
  deltas?: boolean;
  /** Per use, the deltas applied in memory to the chunk before it is written there. */
  chains?: DeltaChains;
}

export interface RangeWriter {
  /** Writes `data` at `offset` of `file`: `uses` chunk uses of that file done. */
  write(file: number, data: Uint8Array, offset: number, uses: number): Promise<void>;
  /** Reads `into.length` bytes at `offset` of `file` into `into` (for delta phases); how many it read. */
  read(file: number, into: Buffer, offset: number): Promise<number>;
}

/** Chunks up to this size are copied into runs of consecutive bytes of a file, written once per run of up to `WRITE_RUN` bytes. */
const SMALL_CHUNK = 32 * 1024;
const WRITE_RUN = 1024 * 1024;

/** Zeros to compare large chunks with. */
const ZEROS = Buffer.alloc(256 * 1024);

function allZero(b: Uint8Array): boolean {
  for (let at = 0; at < b.length; at += ZEROS.length) {
    const n = Math.min(ZEROS.length, b.length - at);
    if (Buffer.compare(Buffer.from(b.buffer, b.byteOffset + at, n), ZEROS.subarray(0, n)) !== 0) return false;
  }
  return true;
}

/**
 * Returns the reason the first chunk that fails verification is corrupt, or
 * undefined when all were written. With `holes` (files created empty at
 * their size by this restore), large chunks of zeros are not written: they
 * stay holes, so a sparse file comes back sparse rather than as allocated
 * zeros.
 */
export async function writeRange(codec: ChunkCodec, data: Buffer, chunks: RangeChunks, out: RangeWriter, onChunk?: (bytes: number) => void, holes = false): Promise<string | undefined> {
  const { starts, lengths, rawLengths, useCounts, useFiles, useOffsets } = chunks;
  const ids = Buffer.from(chunks.ids.buffer, chunks.ids.byteOffset, chunks.ids.byteLength);
  // One decompression buffer per range, reused chunk after chunk (writes are awaited in turn).
  let largest = 1;
  for (const n of rawLengths) largest = Math.max(largest, n);
  const scratch = Buffer.allocUnsafeSlow(largest);
  const baseBytes = chunks.deltas ? Buffer.allocUnsafeSlow(largest) : undefined;
  // A chain applied in memory alternates between two buffers (a delta's base and result never share memory).
  const chainStarts = chunks.chains?.starts;
  const chainBytes = chunks.chains && Buffer.from(chunks.chains.bytes.buffer, chunks.chains.bytes.byteOffset, chunks.chains.bytes.byteLength);
  const applied = chainBytes ? [Buffer.allocUnsafeSlow(largest), Buffer.allocUnsafeSlow(largest)] : [];
  /** What use `w` ends with: `plain`, or the page its chain of deltas gives; a string when a delta fails. */
  const finalPage = (w: number, plain: Buffer): Buffer | string => {
    let page = plain;
    if (!chainStarts || !chainBytes) return page;
    for (let at = chainStarts[w]!; at < chainStarts[w + 1]!; ) {
      const { step, next } = readStep(chainBytes, at);
      const result = codec.applyDelta(step.id, step, page, page.buffer === applied[0]!.buffer ? applied[1] : applied[0]);
      if (typeof result === 'string') return result;
      page = result;
      at = next;
    }
    return page;
  };
  const run = { file: -1, offset: 0, length: 0, uses: 0, buf: undefined as Buffer | undefined };
  const flush = async () => {
    if (run.uses === 0) return;
    await out.write(run.file, run.buf!.subarray(0, run.length), run.offset, run.uses);
    run.uses = run.length = 0;
  };
  let u = 0;
  for (let i = 0; i < starts.length; i++) {
    const start = starts[i]!;
    const id = ids.subarray(i * ID_BYTES, (i + 1) * ID_BYTES);
    const blob = data.subarray(start, start + lengths[i]!);
    let plain: Buffer | string;
    if (baseBytes) {
      if (useCounts[i] === 0) continue;
      // Every place of a delta holds its base now: the first one is read. No write gathered for this phase is
      // pending there (a phase writes each place once, and this place's chunk is this one), so none is flushed.
      const base = baseBytes.subarray(0, rawLengths[i]!);
      const n = await out.read(useFiles[u]!, base, useOffsets[u]!);
      plain = n === base.length ? codec.decodeDelta(id, blob, base, scratch) : `chunk ${id.toString('hex')}: its base was not in place (${n} of ${base.length} bytes)`;
    } else plain = codec.decode(id, blob, scratch);
    if (typeof plain === 'string') return plain;
    const end = u + useCounts[i]!;
    for (; u < end; u++) {
      const file = useFiles[u]!;
      const offset = useOffsets[u]!;
      const page = finalPage(u, plain);
      if (typeof page === 'string') return page;
      if (page.length > SMALL_CHUNK) {
        await flush();
        await out.write(file, holes && !baseBytes && allZero(page) ? page.subarray(0, 0) : page, offset, 1);
      } else {
        if (run.uses > 0 && (run.file !== file || run.offset + run.length !== offset || run.length + plain.length > WRITE_RUN)) await flush();
        if (run.uses === 0) {
          run.file = file;
          run.offset = offset;
        }
        run.buf ??= Buffer.allocUnsafe(WRITE_RUN);
        page.copy(run.buf, run.length);
        run.length += page.length;
        run.uses++;
      }
    }
    // A place's bytes are counted once, when its first phase writes it.
    if (!baseBytes) onChunk?.(plain.length * useCounts[i]!);
  }
  await flush();
  return undefined;
}
