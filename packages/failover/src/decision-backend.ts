/**
 * What failover needs to decide: a linearizable create-only write per epoch
 * (the first to name epoch N+1's leader wins), per-observer votes, and a lease
 * the primary renews and observers judge on their own clocks. The object
 * store implements it (`ObjectStoreDecisions`, the default); an etcd or
 * Kubernetes Lease implementation plugs in here instead.
 */
import type { LeaderRecord, VoteRecord } from './decision-records.js';
import type { FailoverReport } from './failover-report.js';

/** The primary's lease in one epoch, as its holder sees it. */
export interface PrimaryLease {
  readonly epoch: number;
  /** Throws unless the lease certainly holds now. */
  prove(what: string): void;
  /** Until when (the holder's monotonic clock, ms) the lease holds without another renewal; undefined once lost or released. */
  validUntil(): number | undefined;
  /** Renews now (a timer does so every third of the time-to-live); a renewal due later than the time-to-live loses the lease for good. */
  renew(): Promise<void>;
  /** Gives the lease up; resolves false when the release could not be recorded (observers then wait for it to go stale). */
  release(): Promise<boolean>;
}

/** One observer's view of the primary's lease in one epoch. */
export interface LeaseWatch {
  /** Whether the lease has ended as of now on this observer's clock: released, or silent for its time-to-live plus a margin since first seen. Never taken before it was ever seen (undefined then). */
  ended(): Promise<boolean | undefined>;
  /** Milliseconds until it would end if nothing more is seen; 0 when it has. */
  remaining(): Promise<number>;
}

/** What a primary that stepped down cleanly leaves its successor: everything up to and with its shutdown checkpoint must be received before promotion. */
export interface Handover {
  node: string;
  checkpointLsn: string;
  writtenAt: string;
}

export interface ClaimOutcome {
  /** Whether `record` is the leader now (written by this call or an earlier attempt of it). */
  won: boolean;
  /** The leader record that holds the epoch. */
  leader: LeaderRecord;
}

export interface DecisionBackend {
  /** Where it is, for messages. */
  readonly location: string;
  /** The newest epoch's leader record, or undefined before `failover init`. */
  current(): Promise<LeaderRecord | undefined>;
  /** Epoch `epoch`'s leader record, or undefined when no one was named yet. */
  leader(epoch: number): Promise<LeaderRecord | undefined>;
  /** Names `record.node` leader of `record.epoch` unless someone was named first; never replaces a leader. */
  claim(record: LeaderRecord): Promise<ClaimOutcome>;
  /** Records one vote (create-only: an observer's vote numbers never repeat). */
  vote(record: VoteRecord): Promise<void>;
  /** Each observer's newest vote on `epoch`'s primary. */
  votes(epoch: number): Promise<VoteRecord[]>;
  /** Takes the primary's lease for `epoch`. */
  acquireLease(epoch: number, options: { ttlMs: number; clock: () => number }): Promise<PrimaryLease>;
  /** A primary of `epoch` that stopped cleanly for a switchover records where its shutdown checkpoint is (create-only). */
  saveHandover(epoch: number, handover: Handover): Promise<void>;
  handover(epoch: number): Promise<Handover | undefined>;
  /** Keeps a failover's report (create-only: the first one written for an epoch stays). */
  saveReport(report: FailoverReport): Promise<void>;
  /** The report of the failover that began `epoch`, if one was written. */
  report(epoch: number): Promise<FailoverReport | undefined>;
  /** Watches `epoch`'s primary lease from an observer. */
  watchLease(epoch: number, options: { clock: () => number; marginMs?: (ttlMs: number) => number }): LeaseWatch;
}
