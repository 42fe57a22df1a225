/**
 * Leases in the store (format in `format/lease-record.ts`): a holder takes a
 * lease before it writes anything, renews it while it works and proves it
 * still holds it right before it commits; an observer (garbage collection,
 * `info`) judges a lease ended when it was released, or when the observer has
 * seen no renewal for the lease's time-to-live plus a margin, measured on the
 * observer's own monotonic clock from the moment it first saw the newest
 * record. No decision compares two hosts' wall clocks.
 *
 * Why that is safe: a holder counts its lease from the moment it *started*
 * writing its newest record, which is before anyone can see that record; it
 * stops trusting the lease `ttl` after that, and also gives it up for good
 * when a renewal comes due later than `ttl` (a process stopped by SIGSTOP,
 * or starved, finds so when it runs again). An observer counts from when it
 * first saw the record — later — and waits `ttl + margin`. The margin covers
 * what a holder may still have in flight after its last proof (a commit
 * request on its way to the store) and the rate difference of two monotonic
 * clocks, which is parts per million.
 */
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { performance } from 'node:perf_hooks';
import { CorruptObjectError, LeaseLostError, MissingObjectError, ObjectConflictError } from '../errors.js';
import { decodeCarriedJson, encodeCarriedJson } from '../format/carried-json.js';
import { LEASE_MAGIC, leaseId, leaseKey, leaseRecordSchema, LOCKS_PREFIX, parseLeaseKey, releaseKey, type LeaseMode, type LeaseRecord } from '../format/lease-record.js';
import { collectList, type ObjectInfo, type ObjectStore } from '../store/object-store.js';
import type { Repository } from './repository.js';

/** What leases need of a store; a repository, or a bare store (a mirror holds leases without keys). */
interface LeaseStore {
  put(key: string, bytes: Uint8Array): Promise<unknown>;
  get(key: string): Promise<Uint8Array>;
  list(prefix: string): Promise<ObjectInfo[]>;
}

/** Where leases are kept: the repository's objects, or a store reached without keys. */
export type LeaseHome = Repository | ObjectStore;

function leaseStore(home: LeaseHome): LeaseStore {
  // A repository has a key ring; a bare store (MemoryStore keeps a map called `objects`) has none.
  if ('keyRing' in home) return home.objects;
  return { put: (k, b) => home.put(k, b), get: (k) => home.get(k), list: (p) => collectList(home, p) };
}

/** A minute: renewals every 20 s; an observer gives up on a silent holder after 90 s. */
export const DEFAULT_LEASE_TTL_MS = 60_000;

/** Milliseconds of a monotonic clock; `performance.now` unless a test drives time. */
export type MonotonicClock = () => number;

export interface LeaseOptions {
  /** What the holder does (backup, wal-push, restore, expire, gc…); names the lease. */
  purpose: string;
  mode?: LeaseMode;
  /** Time-to-live after each renewal (default 60 s); renewed every third of it. */
  ttlMs?: number;
  clock?: MonotonicClock;
}

/** Lease records are not sealed: they hold nothing secret, and tools without keys (mirror) hold leases too. */
export function encodeLeaseRecord(record: LeaseRecord): Buffer {
  return encodeCarriedJson(LEASE_MAGIC, record);
}

export function decodeLeaseRecord(key: string, bytes: Uint8Array): LeaseRecord {
  const record = decodeCarriedJson(key, bytes, LEASE_MAGIC, 'lease record', leaseRecordSchema) as LeaseRecord;
  const named = parseLeaseKey(key);
  const seqOk = named?.seq === 'released' ? record.released === true : record.seq === named?.seq;
  if (!named || record.lease !== named.lease || !seqOk || !(record.ttlMs > 0)) throw new CorruptObjectError(key, `holds the record of lease ${JSON.stringify(record.lease)}`);
  return record;
}

/** A lease this process holds. */
export class Lease {
  readonly id: string;
  readonly purpose: string;
  readonly mode: LeaseMode;
  readonly ttlMs: number;
  private readonly store: LeaseStore;
  private readonly clock: MonotonicClock;
  private seq = 0;
  /** When the write of the newest record that reached the store began, on this process's clock. */
  private renewedAt = 0;
  private lost: string | undefined;
  private renewing = false;
  private released = false;
  private timer: NodeJS.Timeout | undefined;

  private constructor(home: LeaseHome, options: LeaseOptions) {
    this.store = leaseStore(home);
    this.purpose = options.purpose;
    this.mode = options.mode ?? 'shared';
    this.ttlMs = options.ttlMs ?? DEFAULT_LEASE_TTL_MS;
    this.clock = options.clock ?? (() => performance.now());
    this.id = leaseId(options.purpose, randomBytes(8).toString('hex'));
  }

  /** Takes a lease: its first record is durable in the store when this resolves; renewals run on a timer until `release`. */
  static async acquire(home: LeaseHome, options: LeaseOptions): Promise<Lease> {
    const lease = new Lease(home, options);
    const started = lease.clock();
    await lease.store.put(leaseKey(lease.id, 0), lease.record(0));
    lease.renewedAt = started;
    lease.timer = setInterval(() => void lease.renew(), Math.max(10, Math.floor(lease.ttlMs / 3)));
    lease.timer.unref();
    return lease;
  }

  /**
   * Throws `LeaseLostError` unless the lease certainly holds now: call it
   * right before a commit (a manifest, a WAL record). `what` names the commit.
   */
  prove(what: string): void {
    if (this.released) throw new LeaseLostError(this.id, `released before ${what}`);
    const age = this.clock() - this.renewedAt;
    if (this.lost === undefined && age >= this.ttlMs) this.lost = `last renewed ${(age / 1000).toFixed(1)} s ago, past its ${(this.ttlMs / 1000).toFixed(1)} s time-to-live`;
    if (this.lost !== undefined) throw new LeaseLostError(this.id, `${this.lost} (before ${what})`);
  }

  /**
   * The moment, on this lease's clock, until which `prove` succeeds unless a
   * renewal lands first; undefined once the lease is lost or released. A
   * watchdog that fences at this moment needs no word from the holder after it.
   */
  validUntil(): number | undefined {
    if (this.released || this.lost !== undefined) return undefined;
    return this.renewedAt + this.ttlMs;
  }

  /** Renews now (the timer calls this); a renewal due later than the time-to-live gives the lease up for good. */
  async renew(): Promise<void> {
    if (this.lost !== undefined || this.renewing || this.released) return;
    const started = this.clock();
    if (started - this.renewedAt >= this.ttlMs) {
      this.lost = `not renewed for ${((started - this.renewedAt) / 1000).toFixed(1)} s, past its ${(this.ttlMs / 1000).toFixed(1)} s time-to-live (the process was stopped, starved, or cut off from the store)`;
      this.stopTimer();
      return;
    }
    this.renewing = true;
    // A failed attempt may still have landed: the next one takes a fresh number rather than conflict with it.
    const seq = ++this.seq;
    try {
      await this.store.put(leaseKey(this.id, seq), this.record(seq));
      this.renewedAt = Math.max(this.renewedAt, started);
    } catch {
      // The next renewal tries again; `prove` fails once the last good one is a time-to-live old.
    } finally {
      this.renewing = false;
    }
  }

  /** Ends the lease with a create-only release record; false when that record could not be written (observers then wait for the lease to go stale). */
  async release(): Promise<boolean> {
    if (this.released) return true;
    this.released = true;
    this.stopTimer();
    try {
      await this.store.put(releaseKey(this.id), this.record(undefined));
      return true;
    } catch (e) {
      if (e instanceof ObjectConflictError) return true;
      return false;
    }
  }

  private stopTimer(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  private record(seq: number | undefined): Buffer {
    const record: LeaseRecord = {
      format: 2,
      lease: this.id,
      ...(seq === undefined ? { released: true as const } : { seq }),
      purpose: this.purpose,
      mode: this.mode,
      ttlMs: this.ttlMs,
      host: hostname(),
      pid: process.pid,
    };
    return encodeLeaseRecord(record);
  }
}

/** Runs `work` under a lease taken for it, releasing the lease however `work` ends. */
export async function withLease<T>(home: LeaseHome, options: LeaseOptions & { lease?: Lease }, work: (lease: Lease) => Promise<T>): Promise<T> {
  if (options.lease) return work(options.lease);
  const lease = await Lease.acquire(home, options);
  try {
    return await work(lease);
  } finally {
    await lease.release();
  }
}

/** What an observer knows of one lease. */
export interface LeaseState {
  lease: string;
  purpose: string;
  mode: LeaseMode;
  ttlMs: number;
  host: string;
  pid: number;
  /** Newest renewal seen. */
  seq: number;
  released: boolean;
  /** Keys of its records, for garbage collection of ended leases. */
  keys: string[];
  /** When this observer first saw `seq` (its own clock). */
  seenAt: number;
}

export interface ObserverOptions {
  clock?: MonotonicClock;
  /** Added to a lease's time-to-live before its silence counts as its end (default half the time-to-live, at least 1 s). */
  marginMs?: (ttlMs: number) => number;
}

export const defaultLeaseMargin = (ttlMs: number): number => Math.max(1000, ttlMs / 2);

/**
 * Watches `locks/`: each `look` lists it once and reads the newest record of
 * each lease whose newest record changed. A lease has ended once released,
 * or once `ttl + margin` passed on this observer's clock since it first saw
 * the lease's newest record.
 */
export class LeaseObserver {
  private readonly store: LeaseStore;
  private readonly clock: MonotonicClock;
  private readonly margin: (ttlMs: number) => number;
  private readonly known = new Map<string, LeaseState>();

  constructor(home: LeaseHome, options: ObserverOptions = {}) {
    this.store = leaseStore(home);
    this.clock = options.clock ?? (() => performance.now());
    this.margin = options.marginMs ?? defaultLeaseMargin;
  }

  /** Lists `locks/` and updates what is known; returns every lease seen, ended or not. */
  async look(): Promise<LeaseState[]> {
    const now = this.clock();
    const byLease = new Map<string, { keys: string[]; seq: number; released: boolean }>();
    for (const { key } of await this.store.list(LOCKS_PREFIX)) {
      const named = parseLeaseKey(key);
      if (!named) continue;
      const entry = byLease.get(named.lease) ?? { keys: [], seq: -1, released: false };
      entry.keys.push(key);
      if (named.seq === 'released') entry.released = true;
      else entry.seq = Math.max(entry.seq, named.seq);
      byLease.set(named.lease, entry);
    }
    for (const id of [...this.known.keys()]) if (!byLease.has(id)) this.known.delete(id);
    for (const [id, seen] of byLease) {
      const before = this.known.get(id);
      if (before && before.seq === seen.seq && before.released === seen.released) {
        before.keys = seen.keys;
        continue;
      }
      const newestKey = seen.released ? releaseKey(id) : leaseKey(id, seen.seq);
      let record: Pick<LeaseRecord, 'purpose' | 'mode' | 'ttlMs' | 'host' | 'pid'>;
      try {
        record = before ?? decodeLeaseRecord(newestKey, await this.store.get(newestKey));
      } catch (e) {
        // Removed between the listing and the read: gone, as far as anyone can tell.
        if (e instanceof MissingObjectError) continue;
        if (!(e instanceof CorruptObjectError)) throw e;
        // Unreadable (damaged, or written by something else): taken for a lease of the default time-to-live, so
        // it holds a collection up for a while, never for ever, and never lets it go early.
        record = { purpose: 'unreadable', mode: 'shared', ttlMs: DEFAULT_LEASE_TTL_MS, host: '?', pid: 0 };
      }
      const state: LeaseState = {
        lease: id,
        purpose: record.purpose,
        mode: record.mode,
        ttlMs: record.ttlMs,
        host: record.host,
        pid: record.pid,
        seq: seen.seq,
        released: seen.released,
        keys: seen.keys,
        seenAt: before && before.seq === seen.seq ? before.seenAt : now,
      };
      this.known.set(id, state);
    }
    return [...this.known.values()];
  }

  /** Whether `state` has ended, as of now on this observer's clock. */
  ended(state: LeaseState): boolean {
    return state.released || this.clock() - state.seenAt > state.ttlMs + this.margin(state.ttlMs);
  }

  /** Milliseconds until `state` would count as ended if nothing more is seen (0 when it has). */
  remaining(state: LeaseState): number {
    return state.released ? 0 : Math.max(0, state.seenAt + state.ttlMs + this.margin(state.ttlMs) - this.clock());
  }
}
