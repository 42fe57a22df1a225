/**
 * An observer (`coffer failover watch`, or a role of the agent): one per
 * region plus a witness. Each probes the epoch's primary, votes "down" after
 * its failure detector says so (and "up" again after a good probe), and,
 * once a majority of observers' newest votes say down, names the most
 * advanced healthy standby leader of the next epoch — the first observer to
 * write that record decides; the others read it. It never promotes anything
 * itself: the named standby's guard does, after the old primary's lease ended.
 */
import { lsnBytes } from './lsn.js';
import type { DecisionBackend } from './decision-backend.js';
import type { LeaderRecord, Verdict, VoteRecord } from './decision-records.js';
import { FailureDetector, type FailureDetectorOptions } from './failure-detector.js';
import { probePrimary, standbyState, type ProbeResult, type StandbyState } from './health-probe.js';
import { monotonicMs } from './monotonic.js';
import { tally } from './quorum.js';
import { hostname } from 'node:os';
import type { FailsafePromises, ObserverView } from './failsafe-promises.js';

export interface FailoverNode {
  name: string;
  /** How observers reach it (libpq URI). */
  conninfo: string;
  password?: string;
}

export interface ObserverOptions extends FailureDetectorOptions {
  decisions: DecisionBackend;
  /** This observer's name. */
  name: string;
  /** Every observer, for majorities. */
  observers: readonly string[];
  nodes: readonly FailoverNode[];
  /** Probe interval (default 1 s). */
  intervalMs?: number;
  /** Per-probe timeout (default 2 s). */
  probeTimeoutMs?: number;
  /**
   * A newly named primary is given this long (from when this observer first saw its epoch) to take its lease
   * and finish promotion before its failed probes count, unless it answered as a primary sooner (default 60 s:
   * the old lease's time-to-live and margin, and PostgreSQL's promotion).
   */
  promotionGraceMs?: number;
  /** A standby more than this many bytes behind the primary's last position seen is not chosen (default 16 MiB). */
  maxLagBytes?: number;
  /** The promises this observer gives a primary cut off from the decision store (failsafe): while one is live it votes no one down and names no one. */
  failsafe?: FailsafePromises;
  onEvent?: (event: ObserverEvent) => void;
}

export type ObserverEventKind = 'probe-failed' | 'vote' | 'withheld' | 'decided' | 'lost-race' | 'no-candidate' | 'unguarded' | 'error';

export interface ObserverEvent {
  kind: ObserverEventKind;
  epoch: number;
  detail: string;
  at: number;
}


export interface Candidate {
  node: string;
  state: StandbyState;
}

/** The most advanced standby that is in recovery and within `maxLagBytes` of `primaryLsn` (when known). */
export function chooseCandidate(states: readonly { node: string; state: StandbyState | undefined }[], primaryLsn: string | undefined, maxLagBytes: number): Candidate | undefined {
  let best: Candidate | undefined;
  const position = (s: StandbyState): number => Math.max(s.receivedLsn ? lsnBytes(s.receivedLsn) : 0, s.replayedLsn ? lsnBytes(s.replayedLsn) : 0);
  for (const { node, state } of states) {
    if (!state || !state.inRecovery) continue;
    if (primaryLsn !== undefined && lsnBytes(primaryLsn) - position(state) > maxLagBytes) continue;
    if (!best || position(state) > position(best.state) || (position(state) === position(best.state) && node < best.node)) best = { node, state };
  }
  return best;
}

export class Observer {
  private readonly detector: FailureDetector;
  private epoch = 0;
  /** The node the epoch names. */
  private leaderNode: string | undefined;
  /** Whether this observer has voted on the epoch, or begun to (failsafe grants no promise then). */
  private votedInEpoch = false;
  /** The newest epoch read from the decision log, entered or not yet. */
  private seenEpoch = 0;
  /** Said that a "down" vote waits for a promise to end (once per wait). */
  private withholding = false;
  /** When this observer entered the epoch, and whether its primary has answered as one since. */
  private enteredAt = 0;
  private seenUp = false;
  private seq = -1;
  private voted: Verdict | undefined;
  /** The primary's last position a good probe saw, for the lag bound. */
  private primaryLsn: string | undefined;
  private lastHealthyAt: string | undefined;
  private loop: Promise<void> | undefined;
  private stopping = false;

  constructor(private readonly o: ObserverOptions) {
    this.detector = new FailureDetector(o);
  }

  start(): void {
    this.loop = (async () => {
      while (!this.stopping) {
        const began = monotonicMs();
        await this.tick().catch((e: unknown) => this.event('error', this.epoch, (e as Error).message));
        await new Promise((r) => setTimeout(r, Math.max(0, (this.o.intervalMs ?? 1000) - (monotonicMs() - began))));
      }
    })();
  }

  async stop(): Promise<void> {
    this.stopping = true;
    await this.loop;
  }

  /** What this observer knows, for a failsafe promise. */
  view(): ObserverView {
    // An epoch read but not entered yet (its votes unread) is known, and names no one this observer can vouch for.
    return { epoch: this.seenEpoch, node: this.seenEpoch === this.epoch ? this.leaderNode : undefined, votedInEpoch: this.votedInEpoch };
  }

  /** One probe, and the vote and decision it leads to. */
  async tick(): Promise<void> {
    const leader = await this.o.decisions.current();
    if (!leader) return;
    this.seenEpoch = Math.max(this.seenEpoch, leader.epoch);
    if (leader.epoch !== this.epoch) await this.enter(leader);
    const node = this.node(leader.node);
    const probe: ProbeResult = node ? await probePrimary({ conninfo: node.conninfo, ...(node.password !== undefined ? { password: node.password } : {}), timeoutMs: this.o.probeTimeoutMs ?? 2000 }) : { ok: false, ms: 0, error: `node ${leader.node} is not in this observer's configuration` };
    if (probe.ok) {
      this.primaryLsn = probe.lsn;
      this.lastHealthyAt = new Date().toISOString();
      this.seenUp = true;
    } else this.event('probe-failed', leader.epoch, probe.error);
    // A primary named by a failover is still waiting out the old lease and promoting: its misses do not count yet.
    const promoting = leader.reason !== 'initial' && !this.seenUp && monotonicMs() - this.enteredAt < (this.o.promotionGraceMs ?? 60_000);
    if (promoting && !probe.ok) return;
    const health = this.detector.record(probe.ok, probe.ok ? '' : probe.error);
    const verdict: Verdict | undefined = health === 'down' ? 'down' : health === 'up' && this.voted === 'down' ? 'up' : undefined;
    if (verdict && verdict !== this.voted) await this.vote(leader, verdict);
    if (this.voted === 'down') await this.decide(leader);
  }

  private async enter(leader: LeaderRecord): Promise<void> {
    const { epoch } = leader;
    // Votes read before the epoch is taken as known: a promise on it is granted only with this settled.
    const mine = (await this.o.decisions.votes(epoch)).find((v) => v.observer === this.o.name);
    this.epoch = epoch;
    this.leaderNode = leader.node;
    this.votedInEpoch = mine !== undefined;
    this.enteredAt = monotonicMs();
    this.seenUp = false;
    this.voted = undefined;
    this.primaryLsn = undefined;
    this.lastHealthyAt = undefined;
    this.detector.record(true);
    // Numbers continue past this observer's own earlier votes (a restarted observer).
    this.seq = mine?.seq ?? -1;
    this.voted = mine?.verdict;
  }

  private async vote(leader: LeaderRecord, verdict: Verdict): Promise<void> {
    const withhold = this.o.failsafe?.withholdFrom();
    if (verdict === 'down' && withhold !== undefined && leader.epoch >= withhold) {
      if (this.withholding) return;
      this.withholding = true;
      const more = `${Math.ceil(this.o.failsafe!.remainingThrough(Infinity) / 1000)} s more`;
      return this.event('withheld', leader.epoch, withhold === 0 ? `${leader.node} looks down, but this observer started too recently to know what it promised before (failsafe): no vote for ${more}` : `${leader.node} looks down, but this observer promised epoch ${withhold}'s primary (failsafe) for ${more}: no vote until the promise ends`);
    }
    // Before the write: a vote whose answer never comes may still land.
    this.votedInEpoch = true;
    this.withholding = false;
    const record: VoteRecord = {
      format: 1,
      cluster: leader.cluster,
      epoch: leader.epoch,
      observer: this.o.name,
      seq: this.seq + 1,
      verdict,
      misses: this.detector.count,
      detail: verdict === 'down' ? this.detector.error : 'probe succeeded',
      ...(this.primaryLsn ? { primaryLsn: this.primaryLsn } : {}),
      ...(this.lastHealthyAt ? { lastHealthyAt: this.lastHealthyAt } : {}),
      host: hostname(),
      pid: process.pid,
      writtenAt: new Date().toISOString(),
    };
    await this.o.decisions.vote(record);
    this.seq = record.seq;
    this.voted = verdict;
    this.event('vote', leader.epoch, `${verdict} on ${leader.node}${verdict === 'down' ? ` after ${record.misses} misses: ${record.detail}` : ''}`);
  }

  private async decide(leader: LeaderRecord): Promise<void> {
    if (this.o.failsafe?.withholdFrom() !== undefined) return;
    const votes = tally(await this.o.decisions.votes(leader.epoch), this.o.observers);
    if (!votes.reached) return;
    // The first primary served before any guard could fence it: until its guard has held the lease, nothing fences it,
    // so no one else may be named.
    if (leader.reason === 'initial' && (await this.o.decisions.watchLease(leader.epoch, { clock: monotonicMs }).ended()) === undefined) {
      return this.event('unguarded', leader.epoch, `${leader.node} never held the primary lease (is its guard running?): not failing over a primary nothing can fence`);
    }
    const standbys = this.o.nodes.filter((n) => n.name !== leader.node);
    const states = await Promise.all(standbys.map(async (n) => ({ node: n.name, state: await standbyState({ conninfo: n.conninfo, ...(n.password !== undefined ? { password: n.password } : {}), timeoutMs: this.o.probeTimeoutMs ?? 2000 }).catch(() => undefined) })));
    const candidate = chooseCandidate(states, this.primaryLsn, this.o.maxLagBytes ?? 16 * 1024 * 1024);
    if (!candidate) return this.event('no-candidate', leader.epoch, `no standby is reachable, in recovery and within ${this.o.maxLagBytes ?? 16 * 1024 * 1024} bytes of the primary`);
    const outcome = await this.o.decisions.claim({
      format: 1,
      cluster: leader.cluster,
      epoch: leader.epoch + 1,
      node: candidate.node,
      reason: 'failover',
      previous: leader.node,
      decidedBy: this.o.name,
      votes: votes.down,
      ...(candidate.state.receivedLsn ? { receivedLsn: candidate.state.receivedLsn } : {}),
      ...(candidate.state.replayedLsn ? { replayedLsn: candidate.state.replayedLsn } : {}),
      host: hostname(),
      pid: process.pid,
      writtenAt: new Date().toISOString(),
    });
    if (outcome.won) this.event('decided', leader.epoch + 1, `named ${candidate.node} primary (down votes: ${votes.down.join(', ')})`);
    else this.event('lost-race', leader.epoch + 1, `${outcome.leader.decidedBy} named ${outcome.leader.node} first`);
  }

  private node(name: string): FailoverNode | undefined {
    return this.o.nodes.find((n) => n.name === name);
  }

  private event(kind: ObserverEventKind, epoch: number, detail: string): void {
    this.o.onEvent?.({ kind, epoch, detail, at: monotonicMs() });
  }
}
