/**
 * Large scratch buffers kept on a thread for its next file. A new buffer of a
 * few MiB costs a page fault (and the kernel's zeroing) for every 4 KiB first
 * written to it, and the garbage collector's unmapping after: paid on every
 * file read, that was a tenth of a short backup's main thread. A kept buffer
 * was faulted in once.
 */
export class BufferPool {
  private readonly spare: Buffer[] = [];

  /** `keep`: how many buffers are held at most (the oldest goes first). */
  constructor(private readonly keep: number) {}

  /** A buffer of at least `min` bytes: a kept one that fits, else a new one of `size` bytes (at least `min`). */
  take(min: number, size = min): Buffer {
    const i = this.spare.findIndex((b) => b.length >= min);
    return i >= 0 ? this.spare.splice(i, 1)[0]! : Buffer.allocUnsafeSlow(Math.max(min, size));
  }

  /** Hands `buffer` on; the caller keeps no view of it. */
  give(buffer: Buffer): void {
    if (buffer.length === 0) return;
    if (this.spare.length >= this.keep) this.spare.shift();
    this.spare.push(buffer);
  }
}
