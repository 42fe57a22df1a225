/** What the decision log says now, for `coffer failover status` and the agent's metrics. */
import type { DecisionBackend } from './decision-backend.js';
import type { LeaderRecord } from './decision-records.js';
import { monotonicMs } from './monotonic.js';
import { tally } from './quorum.js';

export interface FailoverStatus {
  leader: LeaderRecord | undefined;
  /** Observers whose newest vote on the epoch's primary is "down". */
  down: string[];
  needed: number;
  /** The primary's lease as one look sees it: held, released, or never taken. */
  lease: 'held' | 'released' | 'never taken' | 'none';
}

export async function failoverStatus(decisions: DecisionBackend, observers: readonly string[]): Promise<FailoverStatus> {
  const leader = await decisions.current();
  if (!leader) return { leader, down: [], needed: tally([], observers).needed, lease: 'none' };
  const votes = tally(await decisions.votes(leader.epoch), observers);
  const ended = await decisions.watchLease(leader.epoch, { clock: monotonicMs }).ended();
  return { leader, down: votes.down, needed: votes.needed, lease: ended === undefined ? 'never taken' : ended ? 'released' : 'held' };
}
