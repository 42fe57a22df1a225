/**
 * Anti-flapping: a node counts as down only after `misses` consecutive failed
 * probes, all within `windowMs` of now. One lost probe never fails a node
 * over, a success clears the count, and failures too old to be part of one
 * outage (an observer that was paused, a probe loop that stalled) are
 * forgotten rather than added to a new one.
 */
export interface FailureDetectorOptions {
  /** Consecutive failures that make "down" (default 3). */
  misses?: number;
  /** The failures must lie within this many ms of now (default 30 s). */
  windowMs?: number;
  clock?: () => number;
}

export type Health = 'up' | 'suspect' | 'down';

export class FailureDetector {
  readonly misses: number;
  readonly windowMs: number;
  private readonly clock: () => number;
  private failures: number[] = [];
  private lastError = '';

  constructor(options: FailureDetectorOptions = {}) {
    this.misses = options.misses ?? 3;
    this.windowMs = options.windowMs ?? 30_000;
    this.clock = options.clock ?? (() => performance.now());
    if (!Number.isInteger(this.misses) || this.misses < 1) throw new RangeError(`misses must be a positive integer, got ${this.misses}`);
  }

  /** Records one probe's outcome and returns the health it leaves. */
  record(ok: boolean, error = ''): Health {
    if (ok) {
      this.failures = [];
      this.lastError = '';
    } else {
      this.failures.push(this.clock());
      this.lastError = error;
    }
    return this.health();
  }

  health(): Health {
    const since = this.clock() - this.windowMs;
    this.failures = this.failures.filter((t) => t >= since);
    if (this.failures.length >= this.misses) return 'down';
    return this.failures.length > 0 ? 'suspect' : 'up';
  }

  /** Consecutive failures still inside the window. */
  get count(): number {
    this.health();
    return this.failures.length;
  }

  get error(): string {
    return this.lastError;
  }
}
