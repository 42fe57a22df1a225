/**
 * Failsafe, the observer's side: the promises an observer gives a primary
 * that cannot reach the decision store, and the rules that make them safe.
 * A promise on (epoch N, node P) says "for `ttl + margin` from now on my
 * clock, I write no 'down' vote on epoch N or later and name no leader". A
 * primary's guard that holds promises from a majority in a round that began
 * at `s` keeps its server up until `s + ttl` without a lease renewal (see
 * docs/FAILOVER.md, "Failsafe", for the whole argument).
 *
 * An observer grants only when all of these hold:
 * - it has run for `ttl + margin` (a restarted one cannot remember the
 *   promises it gave, nor a vote it was writing when it died — and for the
 *   same reason it votes no one down and names no one until then, as if it
 *   had promised just before it started);
 * - the newest epoch it has read is N, and N names P;
 * - it has never voted on epoch N, nor begun to (an observer's only vote
 *   after a "down" is an "up", so any vote of its on N means it once said
 *   "down" — and a leader of N+1 may have been named on that vote even
 *   after an "up" replaced it);
 * - epoch N is not closed (a switchover's new primary closes the epoch
 *   before it promotes, and waits for the promises to end).
 *
 * Closes are kept in a file, flushed before the answer is sent: an observer
 * that restarts must not grant again in an epoch it closed.
 */
import { mkdir, readFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { InvalidArgumentError, writeDurably } from '@coffer/engine';

/** What the observer knows when a primary asks. */
export interface ObserverView {
  /** The newest epoch it has read from the decision log (0: none yet). */
  epoch: number;
  /** The node that epoch names. */
  node: string | undefined;
  /** Whether it has voted on that epoch, or begun to (a write whose answer never came counts). */
  votedInEpoch: boolean;
}

/** What an observer says of its promises (`GET /v1/state`, `coffer failover status`). */
export interface FailsafeState {
  /** The newest epoch it has read, and the node that epoch names. */
  epoch: number;
  node?: string;
  /** The newest epoch closed by a switchover's new primary (0: none). */
  closedThrough: number;
  /** Live promises: the epoch and how long the latest on it lasts (ms). */
  promises: { epoch: number; remainingMs: number }[];
  /** False until it has run a promise's length (it refuses until then). */
  promising: boolean;
}

export type PromiseAnswer = { granted: true; ms: number } | { granted: false; reason: string };

export interface FailsafePromisesOptions {
  /** The primary's lease time-to-live and the margin observers add to it (the policy's). */
  ttlMs: number;
  marginMs: number;
  /** This process's monotonic clock (ms). */
  clock: () => number;
  /** Where closed epochs are remembered (one small JSON file); without it, in memory only (tests). */
  stateFile?: string;
}

export class FailsafePromises {
  private readonly startedAt: number;
  /** Per epoch, until when (this clock) the latest promise on it lasts. */
  private readonly live = new Map<number, number>();
  private closedThrough = 0;
  /** Writes of the closed epoch, one after another (the file always ends with the newest). */
  private writing: Promise<void> = Promise.resolve();

  private constructor(private readonly o: FailsafePromisesOptions) {
    this.startedAt = o.clock();
  }

  /** Reads the epochs closed before a restart. */
  static async open(o: FailsafePromisesOptions): Promise<FailsafePromises> {
    const p = new FailsafePromises(o);
    if (o.stateFile) {
      const text = await readFile(o.stateFile, 'utf8').catch((e: NodeJS.ErrnoException) => {
        if (e.code === 'ENOENT') return undefined;
        throw e;
      });
      if (text !== undefined) {
        const state = JSON.parse(text) as { closedThrough?: unknown };
        if (typeof state.closedThrough !== 'number' || !Number.isInteger(state.closedThrough) || state.closedThrough < 0) throw new InvalidArgumentError('failsafe state', `${o.stateFile}: closedThrough is not an epoch number`);
        p.closedThrough = state.closedThrough;
      }
    }
    return p;
  }

  /** How long a promise lasts. */
  get promiseMs(): number {
    return this.o.ttlMs + this.o.marginMs;
  }

  /** The newest epoch closed by a switchover's new primary (0: none). */
  get closed(): number {
    return this.closedThrough;
  }

  /** Grants or refuses a promise on (`epoch`, `node`); decided synchronously, so no vote starts between the look and the grant. */
  ask(epoch: number, node: string, view: ObserverView): PromiseAnswer {
    const now = this.o.clock();
    if (now - this.startedAt < this.promiseMs) return { granted: false, reason: `this observer has run ${((now - this.startedAt) / 1000).toFixed(1)} s, less than the ${this.promiseMs / 1000} s a promise lasts (it cannot know what it promised before a restart)` };
    if (epoch <= this.closedThrough) return { granted: false, reason: `epoch ${epoch} is closed (a switchover's new primary closed epochs up to ${this.closedThrough})` };
    if (view.epoch !== epoch || view.node !== node) return { granted: false, reason: view.epoch === 0 ? 'this observer has not read the decision log yet' : `the newest epoch this observer knows is ${view.epoch}, naming ${view.node ?? 'no one'}` };
    if (view.votedInEpoch) return { granted: false, reason: `this observer voted on epoch ${epoch}: a leader of the next may have been named on that vote` };
    const until = now + this.promiseMs;
    this.live.set(epoch, Math.max(this.live.get(epoch) ?? 0, until));
    return { granted: true, ms: this.promiseMs };
  }

  /** Its promises as they stand, with what the observer knows. */
  state(view: ObserverView): FailsafeState {
    const now = this.o.clock();
    this.withholdFrom();
    return {
      epoch: view.epoch,
      ...(view.node !== undefined ? { node: view.node } : {}),
      closedThrough: this.closedThrough,
      promises: [...this.live].map(([epoch, until]) => ({ epoch, remainingMs: until - now })).sort((a, b) => a.epoch - b.epoch),
      promising: now - this.startedAt >= this.promiseMs,
    };
  }

  /**
   * The oldest epoch with a live promise: no "down" vote on it or any later epoch, and no leader named, while
   * there is one. For a promise's length after it starts, every epoch (0): a restarted observer cannot know
   * what it promised before, and must keep those promises too.
   */
  withholdFrom(): number | undefined {
    const now = this.o.clock();
    if (now - this.startedAt < this.promiseMs) return 0;
    let oldest: number | undefined;
    for (const [epoch, until] of this.live) {
      if (until <= now) this.live.delete(epoch);
      else if (oldest === undefined || epoch < oldest) oldest = epoch;
    }
    return oldest;
  }

  /** Milliseconds until every promise on epochs up to `epoch` has ended (0: none live), those it may have given before a restart included. */
  remainingThrough(epoch: number): number {
    const now = this.o.clock();
    let ms = Math.max(0, this.startedAt + this.promiseMs - now);
    for (const [e, until] of this.live) if (e <= epoch) ms = Math.max(ms, until - now);
    return ms;
  }

  /**
   * Closes every epoch up to `epoch`: no promise on them from now on (kept on disk before this resolves).
   * Resolves how long the promises already given on them last.
   */
  async close(epoch: number): Promise<number> {
    // Closed in memory at once (no grant from here on), answered only once the file says so too.
    this.closedThrough = Math.max(this.closedThrough, epoch);
    const file = this.o.stateFile;
    if (file) {
      const write = this.writing.then(async () => {
        await mkdir(dirname(file), { recursive: true, mode: 0o700 });
        await writeDurably(file, JSON.stringify({ closedThrough: this.closedThrough }) + '\n');
      });
      this.writing = write.catch(() => undefined);
      await write;
    }
    return this.remainingThrough(epoch);
  }
}
