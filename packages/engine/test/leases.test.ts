/** Leases in the store, judged on each side's own clock (here a clock the test moves). */
import { describe, expect, it } from 'vitest';
import { Lease, LeaseObserver, LocalKeyProvider, MemoryStore, Repository, withLease } from '@coffer/engine';

async function repository(): Promise<Repository> {
  return Repository.init(new MemoryStore(), LocalKeyProvider.fromPassphrase('lease test'));
}

describe('leases', () => {
  it('a holder proves its lease until a time-to-live passes without a renewal, and renewing late does not bring it back', async () => {
    const repo = await repository();
    let now = 0;
    const lease = await Lease.acquire(repo, { purpose: 'backup', ttlMs: 60_000, clock: () => now });
    now = 30_000;
    expect(() => lease.prove('commit')).not.toThrow();
    await lease.renew();
    now = 80_000;
    expect(() => lease.prove('commit')).not.toThrow();
    // Stopped for longer than the time-to-live: the next renewal finds the gap and gives the lease up for good.
    now = 200_000;
    await lease.renew();
    expect(() => lease.prove('writing the manifest')).toThrow(/lease backup-[0-9a-f]{16} lost: not renewed for 170\.0 s/);
    now = 200_001;
    await lease.renew();
    expect(() => lease.prove('writing the manifest')).toThrow(/COFFER_LEASE_LOST|lost/);
    await lease.release();
  });

  it('an observer counts from when it first saw the newest record, and waits the time-to-live plus the margin', async () => {
    const repo = await repository();
    let holderClock = 0;
    let observerClock = 1_000_000; // the two clocks share no origin
    const lease = await Lease.acquire(repo, { purpose: 'wal-push', ttlMs: 10_000, clock: () => holderClock });
    const observer = new LeaseObserver(repo, { clock: () => observerClock, marginMs: () => 5_000 });
    let [state] = await observer.look();
    expect(state).toMatchObject({ lease: lease.id, purpose: 'wal-push', mode: 'shared', seq: 0, released: false });
    observerClock += 14_000;
    expect(observer.ended(state!)).toBe(false);
    holderClock += 5_000;
    await lease.renew();
    [state] = await observer.look();
    expect(state!.seq).toBe(1);
    observerClock += 14_999;
    expect(observer.ended(state!)).toBe(false);
    observerClock += 2;
    expect(observer.ended(state!)).toBe(true);
    await lease.release();
    [state] = await observer.look();
    expect(state!.released).toBe(true);
    expect(observer.ended(state!)).toBe(true);
  });

  it('withLease releases however the work ends', async () => {
    const repo = await repository();
    await expect(withLease(repo, { purpose: 'restore' }, async () => Promise.reject(new Error('boom')))).rejects.toThrow('boom');
    const states = await new LeaseObserver(repo).look();
    expect(states).toHaveLength(1);
    expect(states[0]!.released).toBe(true);
  });

  it('refuses a purpose that would not make a key', async () => {
    const repo = await repository();
    await expect(Lease.acquire(repo, { purpose: 'Bad Purpose' })).rejects.toThrow(/lease purpose/);
  });
});
