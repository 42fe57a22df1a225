/**
 * The decision log in an object store (see `decision-records.ts` for the
 * layout). The store's create-only put is the one consensus primitive: of
 * two observers that write `leaders/<N+1>` at once, exactly one creates it
 * and the other is refused, however the requests interleave or are retried.
 *
 * Reads of a leader record go to its *original* bytes on a versioned bucket
 * (radosgw adds a version for a racing writer instead of refusing it, and the
 * loser's version is current until its writer removes it again): a guard
 * must never act on a record that lost.
 */
import { bytesEqual, collectList, CorruptObjectError, Lease, LeaseObserver, MissingObjectError, ObjectConflictError, PrefixedStore, type LeaseState, type ObjectStore } from '@coffer/engine';
import type { ClaimOutcome, DecisionBackend, Handover, LeaseWatch, PrimaryLease } from './decision-backend.js';
import type { FailoverReport } from './failover-report.js';
import { decodeLeader, decodeVote, encodeLeader, encodeVote, epochPrefix, leaderKey, leadersPrefix, handoverKey, parseLeaderKey, parseVoteKey, reportKey, validateName, voteKey, votesPrefix, type LeaderRecord, type VoteRecord } from './decision-records.js';

/** The lease's purpose in an epoch's `locks/`. */
const PRIMARY = 'primary';

export class ObjectStoreDecisions implements DecisionBackend {
  readonly location: string;

  constructor(
    readonly store: ObjectStore,
    readonly cluster: string,
  ) {
    validateName('failover cluster', cluster);
    this.location = `${store.properties.location} (failover/${cluster})`;
  }

  async current(): Promise<LeaderRecord | undefined> {
    let newest = 0;
    for (const { key } of await collectList(this.store, leadersPrefix(this.cluster))) newest = Math.max(newest, parseLeaderKey(this.cluster, key) ?? 0);
    return newest === 0 ? undefined : this.leader(newest);
  }

  async leader(epoch: number): Promise<LeaderRecord | undefined> {
    const key = leaderKey(this.cluster, epoch);
    try {
      return decodeLeader(key, await this.original(key));
    } catch (e) {
      if (e instanceof MissingObjectError) return undefined;
      throw e;
    }
  }

  async claim(record: LeaderRecord): Promise<ClaimOutcome> {
    const key = leaderKey(this.cluster, record.epoch);
    const bytes = encodeLeader(record);
    try {
      await this.store.put(key, bytes);
    } catch (e) {
      // Refused (someone else's record is there), or the answer was lost: what is stored decides.
      if (!(e instanceof ObjectConflictError)) {
        const stored = await this.original(key).catch(() => undefined);
        if (!stored) throw e;
      }
    }
    // Created, or 'existed' (an earlier attempt of ours landed): read back what holds the epoch either way.
    const stored = await this.original(key);
    return { won: bytesEqual(stored, bytes), leader: decodeLeader(key, stored) };
  }

  async vote(record: VoteRecord): Promise<void> {
    await this.store.put(voteKey(this.cluster, record.epoch, record.observer, record.seq), encodeVote(record));
  }

  async votes(epoch: number): Promise<VoteRecord[]> {
    const newest = new Map<string, { seq: number; key: string }>();
    for (const { key } of await collectList(this.store, votesPrefix(this.cluster, epoch))) {
      const named = parseVoteKey(this.cluster, epoch, key);
      if (!named) continue;
      const seen = newest.get(named.observer);
      if (!seen || named.seq > seen.seq) newest.set(named.observer, { seq: named.seq, key });
    }
    return Promise.all([...newest.values()].map(async ({ key }) => decodeVote(key, await this.store.get(key))));
  }

  async acquireLease(epoch: number, options: { ttlMs: number; clock: () => number }): Promise<PrimaryLease> {
    const lease = await Lease.acquire(this.epochStore(epoch), { purpose: PRIMARY, mode: 'exclusive', ttlMs: options.ttlMs, clock: options.clock });
    return {
      epoch,
      prove: (what) => lease.prove(what),
      validUntil: () => lease.validUntil(),
      renew: () => lease.renew(),
      release: () => lease.release(),
    };
  }

  watchLease(epoch: number, options: { clock: () => number; marginMs?: (ttlMs: number) => number }): LeaseWatch {
    const observer = new LeaseObserver(this.epochStore(epoch), { clock: options.clock, ...(options.marginMs ? { marginMs: options.marginMs } : {}) });
    const primaries = async (): Promise<LeaseState[]> => (await observer.look()).filter((s) => s.purpose === PRIMARY);
    return {
      ended: async () => {
        const leases = await primaries();
        // Never held yet: not "ended" — a new primary may be about to take it. The caller decides what no lease means.
        if (leases.length === 0) return undefined;
        return leases.every((s) => observer.ended(s));
      },
      remaining: async () => Math.max(0, ...(await primaries()).map((s) => observer.remaining(s))),
    };
  }

  async saveHandover(epoch: number, handover: Handover): Promise<void> {
    await this.saveJson(handoverKey(this.cluster, epoch), handover);
  }

  handover(epoch: number): Promise<Handover | undefined> {
    return this.readJson<Handover>(handoverKey(this.cluster, epoch));
  }

  async saveReport(report: FailoverReport): Promise<void> {
    await this.saveJson(reportKey(this.cluster, report.epoch), report);
  }

  report(epoch: number): Promise<FailoverReport | undefined> {
    return this.readJson<FailoverReport>(reportKey(this.cluster, epoch));
  }

  /** Writes a JSON object create-only; one there already (a guard that restarted after writing it) stays. */
  private async saveJson(key: string, value: unknown): Promise<void> {
    try {
      await this.store.put(key, Buffer.from(JSON.stringify(value, null, 2) + '\n'));
    } catch (e) {
      if (!(e instanceof ObjectConflictError)) throw e;
    }
  }

  private async readJson<T>(key: string): Promise<T | undefined> {
    let bytes: Uint8Array;
    try {
      bytes = await this.original(key);
    } catch (e) {
      if (e instanceof MissingObjectError) return undefined;
      throw e;
    }
    try {
      return JSON.parse(Buffer.from(bytes).toString('utf8')) as T;
    } catch (e) {
      throw new CorruptObjectError(key, `does not parse: ${(e as Error).message}`);
    }
  }

  private epochStore(epoch: number): ObjectStore {
    return new PrefixedStore(this.store, epochPrefix(this.cluster, epoch));
  }

  /** The bytes the first writer of `key` stored. */
  private original(key: string): Promise<Uint8Array> {
    return this.store.versions ? this.store.versions.original(key) : this.store.get(key);
  }
}
