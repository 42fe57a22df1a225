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
import { requireCommonJs } from '../commonjs.js';
import { BufferPool } from '../buffer-pool.js';
import { InvalidArgumentError } from '../errors.js';

const { get_chunks } = requireCommonJs('fastcdc-wasm') as typeof import('fastcdc-wasm');

export interface ChunkerParams {
  minSize: number;
  avgSize: number;
  maxSize: number;
}

export const DEFAULT_CHUNKER: ChunkerParams = { minSize: 16 * 1024, avgSize: 64 * 1024, maxSize: 256 * 1024 };

/** Fixed-size cuts from the start of the file: page-aligned when `size` is a multiple of the page size. */
export interface FixedChunkerParams {
  algorithm: 'fixed';
  size: number;
  /** New chunks of a file are compressed and sealed together, up to this many bytes per blob (absent: one blob per chunk). */
  groupBytes?: number;
}

/** How one file is cut. */
export type Chunking = (ChunkerParams & { algorithm: 'fastcdc' }) | FixedChunkerParams;

/** PostgreSQL's page size: fixed chunks for relation files must hold whole pages. */
export const PAGE_SIZE = 8192;

/** Relation files in new repositories: one chunk per page (benchmarks/README.md has the evidence). */
export const DEFAULT_RELATION_CHUNKER: FixedChunkerParams = { algorithm: 'fixed', size: PAGE_SIZE, groupBytes: 128 * 1024 };

export function validateFixedChunker(p: FixedChunkerParams): FixedChunkerParams {
  const ok = p.algorithm === 'fixed' && Number.isInteger(p.size) && p.size >= PAGE_SIZE && p.size <= 16 * 1024 * 1024 && p.size % PAGE_SIZE === 0;
  if (!ok) throw new InvalidArgumentError('relation chunk size', `need a multiple of ${PAGE_SIZE} up to 16 MiB, got ${JSON.stringify(p)}`);
  const g = p.groupBytes;
  if (g !== undefined && (!Number.isInteger(g) || g < p.size || g > 16 * 1024 * 1024 || g / p.size > 0xffff)) {
    throw new InvalidArgumentError('relation group size', `need at least one chunk (${p.size}) and at most 16 MiB, got ${g}`);
  }
  return p;
}

/** What every chunker offers: feed bytes in any pieces, receive the chunks that became final. */
export interface Chunker {
  push(data: Uint8Array): Buffer[];
  finish(): Buffer[];
  /** Done with the chunker and every chunk it returned: its buffers may serve the next one. */
  release?(): void;
}

export function createChunker(c: Chunking): Chunker {
  return c.algorithm === 'fixed' ? new FixedChunker(c.size) : new StreamingChunker(c);
}

export function validateChunkerParams(p: ChunkerParams): ChunkerParams {
  const ok =
    Number.isInteger(p.minSize) && Number.isInteger(p.avgSize) && Number.isInteger(p.maxSize) &&
    p.minSize >= 64 && p.avgSize >= 256 && p.maxSize >= 1024 &&
    p.minSize <= p.avgSize && p.avgSize <= p.maxSize && p.maxSize <= 64 * 1024 * 1024;
  if (!ok) throw new InvalidArgumentError('chunker parameters', `need 64 ≤ min ≤ avg ≤ max ≤ 64 MiB with avg ≥ 256 and max ≥ 1024, got ${JSON.stringify(p)}`);
  return p;
}

/** Working buffers of released chunkers, for the next file's (a new one would fault in every byte it chunks). */
const workBuffers = new BufferPool(4);

/**
 * Feed bytes in any pieces; receive chunks. Returned chunks are views into a
 * working buffer that is reused, so they are valid only until the next call.
 */
export class StreamingChunker implements Chunker {
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
      // Pending bytes stay below maxSize, so this grows only to maxSize + the largest push (with room
      // for what stays pending: reads of one size then fit without growing again).
      const need = pending + data.byteLength;
      const next = workBuffers.take(need, Math.max(need + this.params.maxSize * 2, this.work.length * 2));
      this.work.copy(next, 0, this.start, this.len);
      workBuffers.give(this.work);
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

  release(): void {
    workBuffers.give(this.work);
    this.work = Buffer.alloc(0);
    this.start = this.len = 0;
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

/**
 * Cuts every `size` bytes counted from the start of the input; the last chunk
 * may be shorter. Returned chunks are views into the input or into a reused
 * buffer: valid until the next call, and while the input is left as it is.
 */
export class FixedChunker implements Chunker {
  private readonly size: number;
  private work: Buffer;
  private len = 0;
  /** Bytes at the front already returned as chunks; dropped at the next call. */
  private pendingShift = 0;

  constructor(size: number) {
    if (!Number.isInteger(size) || size < 1) throw new InvalidArgumentError('fixed chunk size', `must be a positive integer, got ${size}`);
    this.size = size;
    this.work = Buffer.alloc(0);
  }

  push(data: Uint8Array): Buffer[] {
    if (data.byteLength === 0) return [];
    this.shift();
    if (this.len === 0) {
      // Nothing held back: whole chunks are views of the input itself (valid as long as the caller keeps it), only the tail is copied.
      const input = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
      const whole = input.length - (input.length % this.size);
      const out: Buffer[] = [];
      for (let o = 0; o < whole; o += this.size) out.push(input.subarray(o, o + this.size));
      if (whole < input.length) {
        if (this.work.length < this.size * 2) this.work = Buffer.allocUnsafeSlow(this.size * 2);
        input.copy(this.work, 0, whole);
        this.len = input.length - whole;
      }
      return out;
    }
    const total = this.len + data.byteLength;
    if (total > this.work.length) {
      const next = Buffer.allocUnsafeSlow(Math.max(total, this.size * 2, this.work.length * 2));
      this.work.copy(next, 0, 0, this.len);
      this.work = next;
    }
    this.work.set(data, this.len);
    this.len = total;
    const whole = this.len - (this.len % this.size);
    const out: Buffer[] = [];
    for (let o = 0; o < whole; o += this.size) out.push(this.work.subarray(o, o + this.size));
    // The tail moves to the front at the next push, once the caller is done with these views.
    this.pendingShift = whole;
    return out;
  }

  finish(): Buffer[] {
    this.shift();
    const out = this.len > 0 ? [this.work.subarray(0, this.len)] : [];
    this.len = 0;
    return out;
  }

  private shift(): void {
    if (this.pendingShift === 0) return;
    this.work.copyWithin(0, this.pendingShift, this.len);
    this.len -= this.pendingShift;
    this.pendingShift = 0;
  }
}

/** Chunks a whole buffer at once (same boundaries as streaming it). */
export function chunkBuffer(data: Uint8Array, params: ChunkerParams | Chunking): Buffer[] {
  const c = 'algorithm' in params ? createChunker(params) : new StreamingChunker(params);
  return [...c.push(data), ...c.finish()];
}
