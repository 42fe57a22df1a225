/**
 * Streamed WAL put back into segments. Bytes arrive in XLogData messages at
 * LSNs; they leave as whole segments (name and bytes, ready to archive like a
 * file from pg_wal) and, in between, as the open segment's prefix received so
 * far. Never skips a byte: a message that does not start where the previous
 * one ended is refused — a gap means WAL that will never be archived.
 */
import { SourceError } from '../errors.js';
import { formatLsn, segmentName } from './layout.js';

export interface AssembledSegment {
  name: string;
  /** The segment's first LSN. */
  start: bigint;
  bytes: Buffer;
}

export class SegmentAssembler {
  private segStart: bigint;
  private buf: Buffer;
  private filled: number;
  private readonly size: bigint;

  /**
   * Receives timeline `timeline` from `start` on. `prefix`: the bytes of
   * `start`'s segment before it, when resuming in the middle of one (their
   * count must be `start`'s offset in it).
   */
  constructor(
    readonly timeline: number,
    readonly segmentBytes: number,
    start: bigint,
    prefix: Buffer = Buffer.alloc(0),
  ) {
    this.size = BigInt(segmentBytes);
    this.segStart = start - (start % this.size);
    if (BigInt(prefix.length) !== start - this.segStart) {
      throw new SourceError('replication stream', `resuming at ${formatLsn(start)} needs the ${start - this.segStart} bytes of its segment before it, not ${prefix.length}`);
    }
    this.buf = Buffer.alloc(segmentBytes);
    prefix.copy(this.buf);
    this.filled = prefix.length;
  }

  /** Where the next byte belongs: everything before it has been received. */
  get position(): bigint {
    return this.segStart + BigInt(this.filled);
  }

  /** The segment being filled, and its bytes received so far (a view: bytes once received never change). */
  open(): AssembledSegment {
    return { name: segmentName(this.timeline, this.segStart / this.size, this.segmentBytes), start: this.segStart, bytes: this.buf.subarray(0, this.filled) };
  }

  /** Adds the WAL bytes `data` that start at `start`; returns the segments they complete, in order. */
  add(start: bigint, data: Buffer): AssembledSegment[] {
    if (start !== this.position) {
      throw new SourceError('replication stream', `WAL at ${formatLsn(start)} does not follow ${formatLsn(this.position)}: ${start > this.position ? `${start - this.position} bytes would be missing` : 'bytes would be received twice'}`);
    }
    const done: AssembledSegment[] = [];
    let at = 0;
    while (at < data.length) {
      const n = Math.min(data.length - at, this.segmentBytes - this.filled);
      data.copy(this.buf, this.filled, at, at + n);
      this.filled += n;
      at += n;
      if (this.filled === this.segmentBytes) {
        done.push({ name: segmentName(this.timeline, this.segStart / this.size, this.segmentBytes), start: this.segStart, bytes: this.buf });
        this.buf = Buffer.alloc(this.segmentBytes);
        this.filled = 0;
        this.segStart += this.size;
      }
    }
    return done;
  }
}
