/**
 * Streaming content-defined chunking over `fastcdc-wasm`.
 *
 * `get_chunks(bytes, min, avg, max)` cuts a whole buffer; its last cut is the
 * buffer's end, which is not a real boundary. FastCDC also normalises by the
 * bytes it has left: with fewer than `max` bytes after a chunk's start, it
 * switches masks earlier and may cut where the full stream would not. So a
 * chunk is only final once at least `max` bytes followed its start in the
 * buffer (or the input ended); everything from the first non-final start is
 * held back and cut again when more data arrives. Boundaries therefore depend
 * only on the bytes, never on how they were split into reads.
 */
import { get_chunks } from 'fastcdc-wasm';
import { InvalidArgumentError } from '../errors.js';

export interface ChunkerParams {
  minSize: number;
  avgSize: number;
  maxSize: number;
}

export const DEFAULT_CHUNKER: ChunkerParams = { minSize: 16 * 1024, avgSize: 64 * 1024, maxSize: 256 * 1024 };

export function validateChunkerParams(p: ChunkerParams): ChunkerParams {
  const ok =
    Number.isInteger(p.minSize) && Number.isInteger(p.avgSize) && Number.isInteger(p.maxSize) &&
    p.minSize >= 64 && p.avgSize >= 256 && p.maxSize >= 1024 &&
    p.minSize <= p.avgSize && p.avgSize <= p.maxSize && p.maxSize <= 64 * 1024 * 1024;
  if (!ok) throw new InvalidArgumentError('chunker parameters', `need 64 ≤ min ≤ avg ≤ max ≤ 64 MiB with avg ≥ 256 and max ≥ 1024, got ${JSON.stringify(p)}`);
  return p;
}

/**
 * Feed bytes in any pieces; receive chunks. Returned chunks are views into a
 * working buffer that is reused, so they are valid only until the next call.
 */
export class StreamingChunker {
  private readonly params: ChunkerParams;
  private work: Buffer = Buffer.alloc(0);
  /** Bytes [start, len) of `work` are pending: not yet emitted as chunks. */
  private start = 0;
  private len = 0;

  constructor(params: ChunkerParams) {
    this.params = validateChunkerParams(params);
  }

  /** Returns the chunks that became final with this input. */
  push(data: Uint8Array): Buffer[] {
    if (data.byteLength === 0) return [];
    const pending = this.len - this.start;
    if (pending + data.byteLength > this.work.length) {
      // Pending bytes stay below maxSize, so this grows only to maxSize + the largest push.
      const next = Buffer.allocUnsafeSlow(Math.max(pending + data.byteLength, this.params.maxSize * 2, this.work.length * 2));
      this.work.copy(next, 0, this.start, this.len);
      this.work = next;
    } else if (this.start > 0) {
      this.work.copyWithin(0, this.start, this.len);
    }
    this.start = 0;
    this.len = pending;
    this.work.set(data, this.len);
    this.len += data.byteLength;
    // Cutting is only worth calling once a final chunk can exist.
    if (this.len < this.params.maxSize * 2) return [];
    return this.cut(false);
  }

  /** End of input: returns the remaining chunks. */
  finish(): Buffer[] {
    const out = this.cut(true);
    this.start = this.len = 0;
    return out;
  }

  private cut(atEnd: boolean): Buffer[] {
    const buf = this.work.subarray(this.start, this.len);
    if (buf.length === 0) return [];
    const { minSize, avgSize, maxSize } = this.params;
    const cuts = get_chunks(buf, minSize, avgSize, maxSize);
    const out: Buffer[] = [];
    let start = 0;
    for (let i = 1; i < cuts.length; i++) {
      if (!atEnd && buf.length - start < maxSize) break;
      const end = cuts[i]!;
      out.push(buf.subarray(start, end));
      start = end;
    }
    this.start += start;
    return out;
  }
}

/** Chunks a whole buffer at once (same boundaries as streaming it). */
export function chunkBuffer(data: Uint8Array, params: ChunkerParams): Buffer[] {
  const c = new StreamingChunker(params);
  return [...c.push(data), ...c.finish()];
}
