/**
 * Taking an exclusive lease: one garbage collection or repair runs at a
 * time (both delete index objects and packs). Each candidate writes its lease, then looks; one that sees another
 * collection's lease alive gives its own up and waits for that one to end
 * (a dead collection's lease ends on its own, `ttl + margin` after it was
 * last seen renewed), then tries again. Two that start together both give
 * way and retry after a random pause.
 */
import { RepositoryBusyError } from '../errors.js';
import { Lease, LeaseObserver, type LeaseOptions, type LeaseState, type ObserverOptions } from '../repository/leases.js';
import type { Repository } from '../repository/repository.js';

export interface ExclusiveOptions extends Omit<LeaseOptions, 'purpose' | 'mode'>, ObserverOptions {
  /** What excludes the others: `gc` (default), `repair`. */
  purpose?: string;
  /** Longest wait for another collection to end, in milliseconds. */
  maxWaitMs: number;
  onWait?: (message: string) => void;
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Takes the one exclusive `gc` lease of the repository; the observer returned has seen every lease since. */
export async function acquireExclusive(repo: Repository, options: ExclusiveOptions): Promise<{ lease: Lease; observer: LeaseObserver }> {
  const observer = new LeaseObserver(repo, options);
  const deadline = performance.now() + options.maxWaitMs;
  for (;;) {
    const lease = await Lease.acquire(repo, { ...options, purpose: options.purpose ?? 'gc', mode: 'exclusive' });
    const rivals = (await observer.look()).filter((s) => s.mode === 'exclusive' && s.lease !== lease.id && !observer.ended(s));
    if (rivals.length === 0) return { lease, observer };
    await lease.release();
    options.onWait?.(`waiting for ${describe(rivals)} to end`);
    for (;;) {
      const alive = (await observer.look()).filter((s) => s.mode === 'exclusive' && !observer.ended(s));
      if (alive.length === 0) break;
      if (performance.now() > deadline) throw new RepositoryBusyError(`another garbage collection or repair is running: ${describe(alive)}; try again when it has finished`);
      await sleep(Math.min(1000, Math.max(50, Math.min(...alive.map((s) => observer.remaining(s))))));
    }
    await sleep(Math.random() * 200);
  }
}

export function describe(leases: readonly LeaseState[]): string {
  return leases.map((s) => `${s.purpose} lease ${s.lease} (host ${s.host}, pid ${s.pid})`).join(', ');
}
