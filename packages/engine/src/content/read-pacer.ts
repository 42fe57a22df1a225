/**
 * A ceiling on how fast a backup reads (`--max-rate`), shared by the main
 * thread and every chunk worker: each read reserves its turn on one timeline
 * kept in shared memory, and waits for it. Reads of all threads together stay
 * under the rate, however many run at once; an idle spell earns no burst.
 */
export class ReadPacer {
  /** Microseconds since the epoch at which the next read may start. */
  private readonly next: BigInt64Array;

  /** `state`: a pacer's `shared` buffer, to pace together with it (another thread's). */
  constructor(
    readonly bytesPerSecond: number,
    state?: SharedArrayBuffer,
  ) {
    if (!(bytesPerSecond > 0) || !Number.isFinite(bytesPerSecond)) throw new RangeError(`a read rate must be a positive number of bytes per second, not ${bytesPerSecond}`);
    this.next = new BigInt64Array(state ?? new SharedArrayBuffer(8));
  }

  get shared(): SharedArrayBuffer {
    return this.next.buffer as SharedArrayBuffer;
  }

  /** Waits until `bytes` more may be read. */
  async take(bytes: number): Promise<void> {
    if (bytes <= 0) return;
    const cost = BigInt(Math.ceil((bytes * 1e6) / this.bytesPerSecond));
    let start: bigint;
    let now: bigint;
    for (;;) {
      const cur = Atomics.load(this.next, 0);
      now = BigInt(Date.now()) * 1000n;
      start = cur > now ? cur : now;
      if (Atomics.compareExchange(this.next, 0, cur, start + cost) === cur) break;
    }
    // A timer counts from the event loop's cached time, which is late when the loop was busy: it can fire that
    // much early, so wait again for what remains.
    for (let waitMs = Number(start - now) / 1000; waitMs >= 1; waitMs = Number(start - BigInt(Date.now()) * 1000n) / 1000) {
      await new Promise((r) => setTimeout(r, waitMs));
    }
  }
}

const UNITS: Record<string, number> = { B: 1, KB: 1e3, MB: 1e6, GB: 1e9, TB: 1e12, KIB: 1024, MIB: 1024 ** 2, GIB: 1024 ** 3, TIB: 1024 ** 4 };

/** "500GB", "1.5TiB", "200KB" → bytes; undefined when it is not such a size. */
export function parseByteSize(text: string): number | undefined {
  const m = /^(\d+(?:\.\d+)?)\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)$/i.exec(text.trim());
  if (!m) return undefined;
  const n = Number(m[1]) * UNITS[m[2]!.toUpperCase()]!;
  return n > 0 && Number.isFinite(n) ? n : undefined;
}

/** "200MB", "1.5GiB", "500KB" (optionally ending in /s) → bytes per second; undefined when it is not such a rate. */
export function parseByteRate(text: string): number | undefined {
  return parseByteSize(text.trim().replace(/\/s$/i, ''));
}
