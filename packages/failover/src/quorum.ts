/** Majorities of a fixed set of observers. */
import type { VoteRecord } from './decision-records.js';

/** More than half of `n`. */
export function majority(n: number): number {
  return Math.floor(n / 2) + 1;
}

export interface Tally {
  /** Configured observers whose newest vote is "down", sorted. */
  down: string[];
  /** How many "down" votes make a majority of the configured observers. */
  needed: number;
  reached: boolean;
}

/** Counts the newest votes of the configured `observers` (votes of anyone else count for nothing). */
export function tally(votes: readonly VoteRecord[], observers: readonly string[]): Tally {
  const configured = new Set(observers);
  const newest = new Map<string, VoteRecord>();
  for (const v of votes) {
    if (!configured.has(v.observer)) continue;
    const seen = newest.get(v.observer);
    if (!seen || v.seq > seen.seq) newest.set(v.observer, v);
  }
  const down = [...newest.values()].filter((v) => v.verdict === 'down').map((v) => v.observer).sort();
  const needed = majority(configured.size);
  return { down, needed, reached: down.length >= needed };
}
