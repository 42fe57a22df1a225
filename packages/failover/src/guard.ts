/**
 * The guard: one per database host, in a process of its own (`coffer
 * failover guard`), beside a watchdog process. It is the only thing that
 * lets its server be a primary:
 *
 * - When the newest epoch names this node, it takes the epoch's primary
 *   lease and keeps the watchdog armed with the lease's deadline. A standby
 *   named leader is promoted only once it holds the lease *and* the previous
 *   epoch's lease has ended (released by a guard that fenced, or silent for
 *   its time-to-live plus a margin) — so the old primary is fenced first.
 * - It fences its server (see `fence.ts`) and gives the lease up when a
 *   newer epoch names another node, when a majority of observers vote its
 *   server down, or when the server stopped (a crashed primary comes back as
 *   a standby, never as a primary in the same epoch). When it cannot renew
 *   the lease in time, the watchdog fences at the deadline without it.
 * - When the epoch names another node and its server runs as a primary (a
 *   healed old primary), it fences it; when it runs as a standby, it points
 *   the standby at the named node (`standby-config.ts`) — a standby of the
 *   old primary follows the new one — and says so when it has not streamed
 *   from there within `streamWaitMs` (its WAL went past the fork: rejoin it).
 */
import { localServer, promoteServer, type LocalServer } from './local-server.js';
import type { DecisionBackend, LeaseWatch, PrimaryLease } from './decision-backend.js';
import type { LeaderRecord } from './decision-records.js';
import { fenceServer, markStandby, type FenceReport } from './fence.js';
import { controlData } from './pg-control.js';
import { lsnBytes } from './lsn.js';
import { postmasterPid, processAlive } from '@coffer/engine';
import { monotonicMs } from './monotonic.js';
import { failoverReport } from './failover-report.js';
import { probePrimary, standbyState, type ProbeTarget } from './health-probe.js';
import { checkpoint } from './switchover.js';
import { withClient } from './server-connection.js';
import type { ServerConnection } from './server-target.js';
import { followPrimary } from './standby-config.js';
import { tally } from './quorum.js';
import type { Watchdog } from './watchdog.js';
import type { CutoverStep } from './cutover.js';
import type { FailsafeQuorum } from './failsafe-quorum.js';

export interface GuardOptions {
  decisions: DecisionBackend;
  /** This node's name in the decision log. */
  node: string;
  dataDir: string;
  /** The local server, for its state and for promotion. */
  conninfo: string;
  password?: string;
  /** Every observer, for majorities. */
  observers: readonly string[];
  /** The primary lease's time-to-live (default 10 s; renewed every third of it). */
  ttlMs?: number;
  /** How often the decision log is read (default 1 s). */
  tickMs?: number;
  /** Added to a silent lease's time-to-live before it counts as ended (default half the time-to-live, at least 1 s). */
  marginMs?: number;
  /** Moves traffic to this node once it is primary (DNS, a command, a webhook), in order. */
  cutover?: readonly CutoverStep[];
  /**
   * How a standby streams from each node, by name (a URI or keyword/value string). When given, this node's
   * standby is pointed at whichever node the decision log names primary.
   */
  replication?: Readonly<Record<string, string>>;
  /** How long a repointed standby may take to stream from its new primary before the guard reports it (default 60 s). */
  streamWaitMs?: number;
  /**
   * Where the WAL of the standby's timeline ends in the repository (e.g. streamed by a synchronous
   * `wal-receive`): the standby replays up to there before it is promoted — from its restore_command,
   * which serves streamed prefixes — waiting up to `replayWaitMs` (default 60 s); then it is promoted anyway
   * and the shortfall reported.
   */
  replayTarget?: (standby: { systemIdentifier: string; timeline: number; segmentBytes: number }) => Promise<string | undefined>;
  replayWaitMs?: number;
  /**
   * Run once per promotion, after traffic moved and the report is written (e.g. a base backup on the new
   * timeline); resolves what to report. It runs beside the guard's loop, never holding it up; aborted when
   * the guard stops.
   */
  afterPromotion?: (epoch: number, signal: AbortSignal) => Promise<string>;
  /**
   * After a switchover away from this node (its server stopped cleanly, the handover saved): once the new
   * primary is promoted, make this node a standby of it and start its server — `coffer failover rejoin` and
   * the server's start command, say — so that a planned switchover leaves every node serving. Resolves what
   * to report; a failure is reported and tried again on later ticks, up to three times. Never after a
   * failover: an old primary that was fenced is rejoined by an operator, who decides what it may discard.
   */
  rejoinAfterSwitchover?: (primary: string, epoch: number) => Promise<string>;
  /**
   * Failsafe: while its lease cannot be renewed, the primary asks the observers for promises every third of
   * the time-to-live and, with a majority in a round that began at `s`, stays up until `s + ttl`; it takes a
   * fresh lease once the decision store answers again. A switchover's new primary closes the old epoch at a
   * majority of observers, and waits for their promises to end, before it promotes.
   */
  failsafe?: FailsafeQuorum;
  /** Arms the fence at the lease's deadline; without one (tests of the decisions alone) fencing is inline only. */
  watchdog?: Watchdog;
  onEvent?: (event: GuardEvent) => void;
}

export type GuardEventKind = 'lease' | 'failsafe' | 'waiting' | 'replayed' | 'promoted' | 'cutover' | 'report' | 'after-promotion' | 'fenced' | 'released' | 'following' | 'rejoined' | 'error';

export interface GuardEvent {
  kind: GuardEventKind;
  epoch: number;
  detail: string;
  /** Host monotonic ms, for phase timings. */
  at: number;
  fence?: FenceReport;
}

export const DEFAULT_PRIMARY_TTL_MS = 10_000;

export class Guard {
  private readonly o: Required<Omit<GuardOptions, 'watchdog' | 'onEvent' | 'password' | 'cutover' | 'replication' | 'afterPromotion' | 'replayTarget' | 'failsafe' | 'rejoinAfterSwitchover'>> &
    Pick<GuardOptions, 'watchdog' | 'onEvent' | 'password' | 'cutover' | 'replication' | 'afterPromotion' | 'replayTarget' | 'failsafe' | 'rejoinAfterSwitchover'>;
  /** After this node stepped down for a switchover: the epoch whose primary it is to rejoin, and the tries so far. */
  private rejoining: { epoch: number; tries: number; since: number } | undefined;
  private lease: PrimaryLease | undefined;
  /** Epochs in which this node was fenced: never primary again in them. */
  private readonly fenced = new Set<number>();
  private keeper: NodeJS.Timeout | undefined;
  /** Failsafe: until when (host monotonic ms) a majority's promises keep this primary up in an epoch, and whether a round is out. */
  private promised: { epoch: number; until: number } | undefined;
  private asking = false;
  private lastRound = -Infinity;
  /** Failsafe, a switchover's new primary: the epoch whose predecessor a majority closed, and until when their promises last. */
  private closed: { epoch: number; until: number } | undefined;
  /** Each observer's newest vote number when this guard's server became primary of its epoch: only later votes count against it. */
  private baseline = new Map<string, number>();
  /**
   * While following: a watch on the current primary's lease, looked at every tick, so that when this node is
   * named next it counts the old lease's silence from when the last renewal appeared, not from when it was named.
   */
  private watching: { epoch: number; watch: LeaseWatch; since: number } | undefined;
  /** A promotion's phase times, until its report is written (after the cutover). */
  private promotion: { epoch: number; fenced: string; promoted: string; promotedAtLsn: string | undefined } | undefined;
  /** While a standby: the epoch whose primary it was pointed at, since when (host monotonic ms), and whether that is settled. */
  private following: { epoch: number; since: number; settled: boolean; fromTimeline: number | undefined } | undefined;
  /** The epoch whose cutover has been done in full. */
  private cutOver = 0;
  private loop: Promise<void> | undefined;
  private stopping = false;
  /** The work after a promotion, while it runs, and what stops it. */
  private after: { run: Promise<void>; abort: AbortController } | undefined;

  constructor(options: GuardOptions) {
    const ttlMs = options.ttlMs ?? DEFAULT_PRIMARY_TTL_MS;
    this.o = { ttlMs, tickMs: 1000, marginMs: Math.max(1000, ttlMs / 2), streamWaitMs: 60_000, replayWaitMs: 60_000, ...options } as typeof this.o;
    // The watchdog fenced at the deadline (this process could not renew in time): the lease is gone with it.
    options.watchdog?.onFenced((reason, report) => {
      const lease = this.lease;
      if (!lease) return;
      this.fenced.add(lease.epoch);
      this.stopKeeper();
      this.lease = undefined;
      this.event('fenced', lease.epoch, `watchdog: ${reason}`, report);
      // The server is stopped now: saying so lets the next primary go ahead without waiting the lease out.
      void lease.release().then((ok) => ok && this.event('released', lease.epoch, 'after the fence'));
    });
    // Without its watchdog nothing would fence the primary at the lease's deadline: fence now, while this process can.
    options.watchdog?.onLost((how) => {
      const lease = this.lease;
      if (!lease) return this.event('error', 0, `the watchdog ${how}; no lease held, nothing to fence`);
      this.fenced.add(lease.epoch);
      this.stopKeeper();
      this.lease = undefined;
      const report = fenceServer(this.o.dataDir);
      this.event('fenced', lease.epoch, `the watchdog ${how}: fenced by the guard itself`, report);
      void lease.release().then((ok) => ok && this.event('released', lease.epoch, 'after the fence'));
    });
  }

  /** The epoch whose lease this guard holds, if any. */
  get holding(): number | undefined {
    return this.lease?.epoch;
  }

  start(): void {
    this.loop = (async () => {
      while (!this.stopping) {
        const began = monotonicMs();
        await this.tick().catch((e: unknown) => this.event('error', this.lease?.epoch ?? 0, (e as Error).message));
        await new Promise((r) => setTimeout(r, Math.max(0, this.o.tickMs - (monotonicMs() - began))));
      }
    })();
  }

  /** Stops watching. A lease held stays armed in the watchdog until its deadline unless `release`. */
  async stop(options: { release?: boolean } = {}): Promise<void> {
    this.stopping = true;
    await this.loop;
    if (options.release && this.lease) await this.giveUp('the guard stopped');
    this.stopKeeper();
    this.after?.abort.abort();
    await this.after?.run;
  }

  /** One look at the decision log and the local server. */
  async tick(): Promise<void> {
    const leader = await this.o.decisions.current();
    if (!leader) return;
    if (leader.node === this.o.node) await this.lead(leader);
    else await this.follow(leader);
  }

  private async lead(leader: LeaderRecord): Promise<void> {
    const { epoch } = leader;
    if (this.fenced.has(epoch)) return;
    if (this.lease && this.lease.epoch !== epoch) await this.giveUp(`epoch ${epoch} began`);
    const local = await localServer(this.o.dataDir, this.o.conninfo, this.o.password);
    if (!this.lease) {
      if (!local.running) return this.event('waiting', epoch, 'named primary, but the server is not running');
      if (local.inRecovery === undefined) return this.event('waiting', epoch, 'named primary, the server does not answer yet');
      await this.takeLease(epoch);
      const again = await this.o.decisions.current();
      if (again && again.epoch !== epoch) return this.giveUp(`epoch ${again.epoch} began while taking the lease`);
    } else if (!local.running) return this.fence(epoch, 'the server stopped');
    else if (this.lease.validUntil() === undefined) await this.freshLease(epoch);
    // Still a standby: promote (again, if an earlier try failed); traffic moves only to a promoted server.
    if (local.inRecovery !== false) {
      if (local.inRecovery === undefined) return;
      await this.promote(leader);
      if (!this.lease || this.promotion?.epoch !== epoch) return;
    }
    if (this.cutOver !== epoch) await this.moveTraffic(epoch);
    else if (this.promotion?.epoch === epoch) await this.writeReport(this.promotion);
    const fresh = (await this.o.decisions.votes(epoch)).filter((v) => v.seq > (this.baseline.get(v.observer) ?? -1));
    const votes = tally(fresh, this.o.observers);
    if (votes.reached) return this.fence(epoch, `a majority of observers (${votes.down.join(', ')}) find this primary down`);
  }

  private async follow(leader: LeaderRecord): Promise<void> {
    if (this.lease && leader.reason === 'switchover' && leader.previous === this.o.node && leader.epoch === this.lease.epoch + 1) return this.stepDown(leader);
    if (this.lease) return this.fence(this.lease.epoch, `epoch ${leader.epoch} names ${leader.node} primary`);
    await this.leaseWatch(leader.epoch).watch.ended();
    const local: LocalServer = await localServer(this.o.dataDir, this.o.conninfo, this.o.password);
    if (local.running && local.inRecovery === false) return this.fence(leader.epoch, `runs as a primary, but epoch ${leader.epoch} names ${leader.node}`);
    if (local.running && local.inRecovery === true) await this.followLeader(leader);
    if (!local.running && this.rejoining?.epoch === leader.epoch) await this.rejoin(leader);
  }

  /** After a switchover away from this node: rejoin the new primary once it is promoted (see `rejoinAfterSwitchover`). */
  private async rejoin(leader: LeaderRecord): Promise<void> {
    const run = this.o.rejoinAfterSwitchover;
    const pending = this.rejoining;
    if (!run || !pending) return;
    const source = this.o.replication?.[leader.node];
    // Rewound against the promoted server, not its standby self; one that cannot be asked is waited for no longer than a stream is.
    const promoted = source === undefined || (await standbyState({ conninfo: source, ...(this.o.password !== undefined ? { password: this.o.password } : {}), timeoutMs: 2000 }).then((st) => !st.inRecovery, () => false));
    if (!promoted && monotonicMs() - pending.since < this.o.streamWaitMs) return;
    pending.tries++;
    try {
      const detail = await run(leader.node, leader.epoch);
      this.rejoining = undefined;
      this.event('rejoined', leader.epoch, `a standby of ${leader.node} again: ${detail}`);
    } catch (e) {
      if (pending.tries >= 3) this.rejoining = undefined;
      this.event('error', leader.epoch, `rejoining ${leader.node} after the switchover (try ${pending.tries} of 3): ${(e as Error).message}`);
    }
  }

  /**
   * Points this standby at the node named primary (once per epoch; a standby streams from a standby too, so
   * this need not wait for the promotion), then watches that it streams, and reports once when it does not
   * within `streamWaitMs`: its WAL went past the point where the new primary's timeline began.
   */
  private async followLeader(leader: LeaderRecord): Promise<void> {
    const source = this.o.replication?.[leader.node];
    if (source === undefined) return;
    if (this.following?.epoch !== leader.epoch) {
      const before = await standbyState(this.localConnection(2000)).catch(() => undefined);
      let changed: boolean;
      try {
        changed = await followPrimary(this.localConnection(30_000), source, this.o.node);
      } catch (e) {
        // Said once per epoch, not on every tick: a role without ALTER SYSTEM stays so until someone grants it.
        this.following = { epoch: leader.epoch, since: monotonicMs(), settled: true, fromTimeline: undefined };
        return this.event('error', leader.epoch, `cannot point the standby at ${leader.node}: ${(e as Error).message} (the guard's role needs superuser, or GRANT ALTER SYSTEM ON PARAMETER primary_conninfo)`);
      }
      // Pointed elsewhere because another node was promoted: settled once it streams that node's new timeline.
      this.following = { epoch: leader.epoch, since: monotonicMs(), settled: false, fromTimeline: changed ? (before?.receivedTimeline ?? before?.timeline ?? 0) : undefined };
      if (changed) this.event('following', leader.epoch, `primary_conninfo now names ${leader.node}; the standby reconnects there`);
      return;
    }
    if (this.following.settled) return;
    const state = await standbyState(this.localConnection(2000)).catch(() => undefined);
    const from = this.following.fromTimeline;
    if (state?.streaming && (from === undefined || (state.receivedTimeline ?? 0) > from)) {
      this.following.settled = true;
      return this.event('following', leader.epoch, `streams from ${leader.node} (timeline ${state.receivedTimeline ?? state.timeline}, received ${state.receivedLsn ?? '?'})`);
    }
    const waited = monotonicMs() - this.following.since;
    if (waited < this.o.streamWaitMs) return;
    this.following.settled = true;
    this.event('error', leader.epoch, `not streaming from ${leader.node} ${Math.round(waited / 1000)} s after it was named: its WAL may have gone past where ${leader.node}'s timeline began — stop it and rejoin it (coffer failover rejoin), or build it again from a backup`);
  }

  private localConnection(connectTimeoutMs: number): ServerConnection & ProbeTarget {
    return { conninfo: this.o.conninfo, ...(this.o.password !== undefined ? { password: this.o.password } : {}), timeoutMs: connectTimeoutMs, connectTimeoutMs, queryTimeoutMs: connectTimeoutMs, applicationName: 'coffer-failover-guard' };
  }

  /**
   * A switchover named another node: stop the server cleanly (fast shutdown), so that its walsenders hand
   * every record up to the shutdown checkpoint to the standbys first; record where that checkpoint is for the
   * successor, which promotes only once it has received it (nothing lost); then give the lease up. A server
   * that does not stop within a minute is fenced like any other.
   */
  private async stepDown(leader: LeaderRecord): Promise<void> {
    const lease = this.lease!;
    const epoch = lease.epoch;
    this.fenced.add(epoch);
    const pid = postmasterPid(this.o.dataDir);
    if (pid !== undefined) {
      try {
        process.kill(pid, 'SIGINT');
      } catch {
        // Gone already.
      }
    }
    const until = monotonicMs() + 60_000;
    while (pid !== undefined && processAlive(pid) && monotonicMs() < until) await new Promise((r) => setTimeout(r, 100));
    markStandby(this.o.dataDir);
    const control = controlData(this.o.dataDir);
    if (control.state !== 'shut down') return this.fence(epoch, `epoch ${leader.epoch} (switchover) names ${leader.node}, and the server did not shut down cleanly (${control.state})`);
    await this.o.decisions.saveHandover(epoch, { node: this.o.node, checkpointLsn: control.checkpointLsn, writtenAt: new Date().toISOString() });
    this.stopKeeper();
    this.lease = undefined;
    await this.o.watchdog?.disarm().catch(() => undefined);
    if (await lease.release()) this.event('released', epoch, `stepped down for ${leader.node} (switchover): shut down cleanly at ${control.checkpointLsn}`);
    if (this.o.rejoinAfterSwitchover) this.rejoining = { epoch: leader.epoch, tries: 0, since: monotonicMs() };
  }

  /** The watch on `epoch`'s primary lease: the one kept while following, or a new one. */
  private leaseWatch(epoch: number): { watch: LeaseWatch; since: number } {
    if (this.watching?.epoch !== epoch) this.watching = { epoch, watch: this.o.decisions.watchLease(epoch, { clock: monotonicMs, marginMs: () => this.o.marginMs }), since: monotonicMs() };
    return this.watching;
  }

  private async snapshotVotes(epoch: number): Promise<void> {
    this.baseline = new Map((await this.o.decisions.votes(epoch)).map((v) => [v.observer, v.seq]));
  }

  private async takeLease(epoch: number): Promise<void> {
    this.lease = await this.o.decisions.acquireLease(epoch, { ttlMs: this.o.ttlMs, clock: monotonicMs });
    await this.snapshotVotes(epoch);
    await this.arm();
    this.stopKeeper();
    // Armed again well within each renewal period, apart from the decision loop (which may wait on the store).
    this.keeper = setInterval(() => void this.arm(), Math.max(50, Math.floor(this.o.ttlMs / 12)));
    this.keeper.unref();
    this.event('lease', epoch, `took the primary lease (time-to-live ${this.o.ttlMs} ms)`);
  }

  private async arm(): Promise<void> {
    const lease = this.lease;
    if (!lease) return;
    this.askForPromises(lease);
    if (!this.o.watchdog) return;
    const until = this.deadline(lease);
    if (until === undefined) return this.fence(lease.epoch, this.o.failsafe ? 'the primary lease was lost, and a majority of observers did not promise in time (failsafe)' : 'the primary lease was lost');
    await this.o.watchdog.arm(until, this.o.dataDir).catch(() => undefined);
  }

  /** Until when this primary may run: the lease's deadline, or a failsafe round's if later; undefined when neither holds. */
  private deadline(lease: PrimaryLease): number | undefined {
    const promised = this.promised?.epoch === lease.epoch && this.promised.until > monotonicMs() ? this.promised.until : undefined;
    const valid = lease.validUntil();
    return valid === undefined ? promised : Math.max(valid, promised ?? valid);
  }

  /**
   * Failsafe: once less than half the time-to-live is left of the lease (renewals are failing), a round of
   * promise requests every third of it; a majority in a round that began at `s` keeps the server up until
   * `s + ttl` (each observer's promise lasts `ttl + margin` from when it got the request, after `s`).
   */
  private askForPromises(lease: PrimaryLease): void {
    const failsafe = this.o.failsafe;
    if (!failsafe || this.asking) return;
    const s = monotonicMs();
    const valid = lease.validUntil();
    if (valid !== undefined && valid - s > this.o.ttlMs / 2) return;
    if (s - this.lastRound < this.o.ttlMs / 3) return;
    this.asking = true;
    this.lastRound = s;
    void failsafe
      .promise(lease.epoch, this.o.node)
      .then(async (round) => {
        if (this.lease !== lease) return;
        if (!round.granted) return this.event('failsafe', lease.epoch, `no majority promised (${round.yes.length ? `only ${round.yes.join(', ')}` : 'none'}; ${Object.entries(round.no).map(([o, why]) => `${o}: ${why}`).join('; ')}): fenced at the lease's deadline unless it is renewed`);
        const first = this.promised?.epoch !== lease.epoch || this.promised.until <= s;
        this.promised = { epoch: lease.epoch, until: Math.max(this.promised?.epoch === lease.epoch ? this.promised.until : 0, s + this.o.ttlMs) };
        if (first) this.event('failsafe', lease.epoch, `the decision store is out of reach; ${round.yes.join(', ')} promised: the server stays up while a majority keeps promising`);
        await this.arm();
      })
      .catch((e: unknown) => this.event('error', lease.epoch, `failsafe: ${(e as Error).message}`))
      .finally(() => (this.asking = false));
  }

  /** The store answers again after failsafe kept the server up without a lease: take a fresh one in the same epoch. */
  private async freshLease(epoch: number): Promise<void> {
    const old = this.lease!;
    if (this.deadline(old) === undefined) return this.fence(epoch, 'the primary lease was lost');
    const lease = await this.o.decisions.acquireLease(epoch, { ttlMs: this.o.ttlMs, clock: monotonicMs });
    if (this.lease !== old) {
      await lease.release();
      return;
    }
    this.lease = lease;
    this.promised = undefined;
    void old.release();
    await this.arm();
    this.event('lease', epoch, 'the decision store answers again: took a fresh primary lease (the observers\' promises kept the server up meanwhile)');
  }

  /** Waits for the previous epoch's lease to end, then promotes the local standby. */
  private async promote(leader: LeaderRecord): Promise<void> {
    const { epoch } = leader;
    if (leader.reason === 'switchover' && this.o.failsafe && !(await this.closePrevious(epoch))) return;
    if (epoch > 1) {
      const { watch, since } = this.leaseWatch(epoch - 1);
      for (;;) {
        const ended = await watch.ended();
        // A lease never seen: its epoch's primary never took it (a standby named that never promoted); wait one whole lease out.
        if (ended === true || (ended === undefined && monotonicMs() - since > this.o.ttlMs + this.o.marginMs)) break;
        if (this.stopping) return;
        this.lease?.prove('waiting to promote');
        const now = await this.o.decisions.current();
        if (now && now.epoch !== epoch) return this.giveUp(`epoch ${now.epoch} began while waiting to promote`);
        this.event('waiting', epoch, `epoch ${epoch - 1}'s primary lease has not ended (${Math.ceil((await watch.remaining()) / 1000)} s at most)`);
        await new Promise((r) => setTimeout(r, Math.min(500, this.o.tickMs)));
      }
    }
    // A switchover: the old primary stopped cleanly and said where its last record is; promote only with it received.
    const handover = leader.reason === 'switchover' && epoch > 1 ? await this.o.decisions.handover(epoch - 1) : undefined;
    while (handover && !this.stopping) {
      const state = await standbyState(this.localConnection(2000)).catch(() => undefined);
      if (state?.receivedLsn && lsnBytes(state.receivedLsn) > lsnBytes(handover.checkpointLsn)) break;
      this.lease?.prove('waiting for the handover');
      this.event('waiting', epoch, `${handover.node} stopped at ${handover.checkpointLsn}; received ${state?.receivedLsn ?? '?'} so far`);
      await new Promise((r) => setTimeout(r, 200));
    }
    const fenced = new Date().toISOString();
    if (this.o.replayTarget && !this.stopping) await this.replayRepository(epoch);
    this.lease?.prove('promoting');
    const promotedAtLsn = await promoteServer(this.o.conninfo, this.o.password);
    // The control file names the new timeline only after a checkpoint (pg_rewind of the old primary reads it there).
    await checkpoint(this.o.conninfo, this.o.password).catch((e: Error) => this.event('error', epoch, `checkpoint after promotion: ${e.message}`));
    this.promotion = { epoch, fenced, promoted: new Date().toISOString(), promotedAtLsn };
    // Votes cast while this server was still a standby were about a primary that did not exist yet.
    await this.snapshotVotes(epoch);
    this.event('promoted', epoch, 'promoted; accepts writes');
  }

  /**
   * Failsafe, before a switchover's promotion: no vote named this node, so nothing stops the old primary from
   * running on observers' promises if it cannot see the new epoch. A majority of observers closes the old
   * epoch (no promise on it from then on), and this waits until the promises they gave have ended. False
   * (tried again on the next tick) while a majority cannot be reached.
   */
  private async closePrevious(epoch: number): Promise<boolean> {
    if (this.closed?.epoch !== epoch) {
      try {
        const round = await this.o.failsafe!.close(epoch - 1);
        this.closed = { epoch, until: monotonicMs() + round.remainingMs };
        this.event('failsafe', epoch, `${round.closed.join(', ')} closed epoch ${epoch - 1}${round.remainingMs > 0 ? `; their promises to its primary end within ${Math.ceil(round.remainingMs / 1000)} s` : ''}`);
      } catch (e) {
        this.event('waiting', epoch, `switchover: ${(e as Error).message}; promoting only once a majority has (failsafe)`);
        return false;
      }
    }
    const { until } = this.closed;
    while (monotonicMs() < until) {
      if (this.stopping) return false;
      this.lease?.prove('waiting for the old epoch\'s promises to end');
      await new Promise((r) => setTimeout(r, Math.min(500, Math.max(1, until - monotonicMs()))));
    }
    return true;
  }

  /**
   * Waits (up to `replayWaitMs`) until the standby has replayed the WAL the repository holds of its timeline.
   * With the old primary fenced nothing is added to it any more: the target is read once.
   */
  private async replayRepository(epoch: number): Promise<void> {
    const local = this.localConnection(5000);
    let target: string | undefined;
    try {
      const id = await withClient(local, async (client) => {
        const [row] = (
          await client.query<{ sysid: string; tli: number; seg: string }>(
            `SELECT (SELECT system_identifier::text FROM pg_control_system()) AS sysid,
                    COALESCE((SELECT received_tli FROM pg_stat_wal_receiver), (SELECT timeline_id FROM pg_control_checkpoint())) AS tli,
                    (SELECT setting FROM pg_settings WHERE name = 'wal_segment_size') AS seg`,
          )
        ).rows;
        return { systemIdentifier: row!.sysid, timeline: row!.tli, segmentBytes: Number(row!.seg) };
      });
      target = await this.o.replayTarget!(id);
    } catch (e) {
      return this.event('error', epoch, `where the repository's WAL ends: ${(e as Error).message}; promoting without replaying it`);
    }
    if (target === undefined) return;
    const began = monotonicMs();
    let replayed: string | undefined;
    for (;;) {
      replayed = (await standbyState(local).catch(() => undefined))?.replayedLsn;
      if (replayed !== undefined && lsnBytes(replayed) >= lsnBytes(target)) return this.event('replayed', epoch, `replayed the repository's WAL to ${target} (${replayed}) in ${((monotonicMs() - began) / 1000).toFixed(1)} s`);
      if (this.stopping) return;
      if (monotonicMs() - began > this.o.replayWaitMs) break;
      this.lease?.prove('replaying the repository');
      await new Promise((r) => setTimeout(r, 200));
    }
    const short = replayed === undefined ? '?' : String(lsnBytes(target) - lsnBytes(replayed));
    this.event('error', epoch, `replayed ${replayed ?? '?'} of the repository's ${target} within ${Math.round(this.o.replayWaitMs / 1000)} s: promoting ${short} bytes short (commits acknowledged there may be lost)`);
  }

  /** Runs the cutover steps; a failure is reported and tried again on the next tick. */
  private async moveTraffic(epoch: number): Promise<void> {
    const steps = this.o.cutover ?? [];
    for (const step of steps) {
      this.lease?.prove(`cutover (${step.describe})`);
      try {
        await step.apply(this.o.node, epoch);
      } catch (e) {
        this.event('error', epoch, `cutover: ${step.describe}: ${(e as Error).message}; trying again`);
        return;
      }
      this.event('cutover', epoch, `${step.describe} points at ${this.o.node}`);
    }
    this.cutOver = epoch;
    if (this.promotion?.epoch === epoch) await this.writeReport(this.promotion);
  }

  /** After the cutover: a write on the new primary, then the failover's report in the decision store. */
  private async writeReport(p: NonNullable<Guard['promotion']>): Promise<void> {
    const trafficMoved = new Date().toISOString();
    const probe = await probePrimary(this.localConnection(2000));
    if (!probe.ok) return this.event('error', p.epoch, `the first write after promotion failed (${probe.error}); the report waits for the next tick`);
    const leader = await this.o.decisions.leader(p.epoch);
    if (!leader) return;
    const report = failoverReport(leader, await this.o.decisions.votes(p.epoch - 1), { fenced: p.fenced, promoted: p.promoted, trafficMoved, firstWrite: new Date().toISOString() }, p.promotedAtLsn);
    await this.o.decisions.saveReport(report);
    this.promotion = undefined;
    this.event('report', p.epoch, `detected → first write ${report.seconds.total ?? '?'} s; RPO ${report.rpoBytes ?? '?'} bytes of WAL`);
    this.runAfterPromotion(p.epoch);
  }

  private runAfterPromotion(epoch: number): void {
    const work = this.o.afterPromotion;
    if (!work || this.stopping) return;
    const abort = new AbortController();
    const run = work(epoch, abort.signal).then(
      (detail) => this.event('after-promotion', epoch, detail),
      (e: unknown) => this.event('error', epoch, `after promotion: ${(e as Error).message}`),
    );
    this.after = { run, abort };
  }

  private async fence(epoch: number, reason: string): Promise<void> {
    this.fenced.add(epoch);
    this.stopKeeper();
    // Released only once the server is stopped: a released lease tells the next primary it may begin.
    const lease = this.lease;
    this.lease = undefined;
    // The watchdog does it when there is one, so the fence completes even if this process dies halfway.
    let report: FenceReport | undefined;
    if (this.o.watchdog) await this.o.watchdog.fence(this.o.dataDir, reason);
    else report = fenceServer(this.o.dataDir);
    this.event('fenced', epoch, reason, report);
    if (lease && (await lease.release())) this.event('released', epoch, 'after the fence');
  }

  private async giveUp(reason: string): Promise<void> {
    const lease = this.lease;
    if (!lease) return;
    this.stopKeeper();
    this.lease = undefined;
    await this.o.watchdog?.disarm().catch(() => undefined);
    await lease.release();
    this.event('released', lease.epoch, reason);
  }

  private stopKeeper(): void {
    if (this.keeper) clearInterval(this.keeper);
    this.keeper = undefined;
  }

  private event(kind: GuardEventKind, epoch: number, detail: string, fence?: FenceReport): void {
    this.o.onEvent?.({ kind, epoch, detail, at: monotonicMs(), ...(fence ? { fence } : {}) });
  }
}
