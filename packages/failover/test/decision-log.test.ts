/**
 * The decision log on its own: records that round-trip and refuse damage,
 * exactly one leader per epoch however racing deciders' requests are
 * delayed, lost or repeated, votes counted per observer, and the lease
 * arithmetic that makes "promote" wait until the old primary was fenced.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { CorruptObjectError, MemoryStore, ObjectConflictError, StoreUnavailableError, type PutOutcome } from '@coffer/engine';
import { ObjectStoreDecisions, leaderKey, tally, voteKey, type LeaderRecord, type VoteRecord } from '@coffer/failover';

const leader = (epoch: number, node: string, decidedBy: string): LeaderRecord => ({
  format: 1,
  cluster: 'main',
  epoch,
  node,
  reason: epoch === 1 ? 'initial' : 'failover',
  decidedBy,
  votes: [],
  host: 'h',
  pid: 1,
  writtenAt: '2026-12-01T00:00:00.000Z',
});

const vote = (observer: string, seq: number, verdict: 'down' | 'up', epoch = 1): VoteRecord => ({
  format: 1,
  cluster: 'main',
  epoch,
  observer,
  seq,
  verdict,
  misses: verdict === 'down' ? 3 : 0,
  detail: '',
  host: 'h',
  pid: 1,
  writtenAt: '2026-12-01T00:00:00.000Z',
});

/** One clock both sides read; the next put takes `latency` on it, and may fail before landing or land and lose its answer. */
class ClockedStore extends MemoryStore {
  now = 0;
  next: { latency: number; lost: boolean; fails: boolean } | undefined;
  override async put(key: string, data: Uint8Array): Promise<PutOutcome> {
    const next = this.next;
    if (!next) return super.put(key, data);
    this.now += next.latency;
    if (next.fails) throw new StoreUnavailableError(key, 'injected: refused');
    const outcome = await super.put(key, data);
    if (next.lost) throw new StoreUnavailableError(key, 'injected: the answer was lost');
    return outcome;
  }
}

type Fault = 'none' | 'delay' | 'lost-response' | 'fail-before' | 'duplicate';

/** A store whose puts are delayed, fail before landing, land but lose their answer, or are delivered twice. */
class FaultyStore extends MemoryStore {
  constructor(private readonly faults: () => { fault: Fault; delayMs: number }) {
    super();
  }
  override async put(key: string, data: Uint8Array): Promise<PutOutcome> {
    const { fault, delayMs } = this.faults();
    await new Promise((r) => setTimeout(r, delayMs));
    if (fault === 'fail-before') throw new StoreUnavailableError(key, 'injected: refused before landing');
    if (fault === 'duplicate') {
      await super.put(key, data).catch(() => undefined);
      await new Promise((r) => setTimeout(r, delayMs));
    }
    const outcome = await super.put(key, data);
    if (fault === 'lost-response') throw new StoreUnavailableError(key, 'injected: the answer was lost');
    return outcome;
  }
}

describe('failover decision log', () => {
  it('leader and vote records round-trip, and a flipped byte or a record under another key is refused', async () => {
    const store = new MemoryStore();
    const log = new ObjectStoreDecisions(store, 'main');
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: 1e6 }), fc.stringMatching(/^[a-z0-9][a-z0-9-]{0,20}$/), fc.nat(), async (epoch, node, flip) => {
        const record = leader(epoch, node, 'obs-a');
        const { won, leader: back } = await log.claim(record);
        expect(won).toBe(true);
        expect(back).toEqual(record);
        expect(await log.leader(epoch)).toEqual(record);
        const bytes = await store.get(leaderKey('main', epoch));
        bytes[flip % bytes.length]! ^= 0x01;
        const damaged = new MemoryStore();
        await damaged.put(leaderKey('main', epoch), bytes);
        await expect(new ObjectStoreDecisions(damaged, 'main').leader(epoch)).rejects.toBeInstanceOf(CorruptObjectError);
        // The same record copied under another epoch's key.
        const moved = new MemoryStore();
        await moved.put(leaderKey('main', epoch + 1), await store.get(leaderKey('main', epoch)));
        await expect(new ObjectStoreDecisions(moved, 'main').leader(epoch + 1)).rejects.toThrow(/holds the leader of main epoch/);
        await store.delete(leaderKey('main', epoch));
      }),
      { numRuns: 60 },
    );
    await log.vote(vote('obs-a', 0, 'down'));
    const moved = new MemoryStore();
    await moved.put(voteKey('main', 1, 'obs-b', 0), await store.get(voteKey('main', 1, 'obs-a', 0)));
    await expect(new ObjectStoreDecisions(moved, 'main').votes(1)).rejects.toBeInstanceOf(CorruptObjectError);
  });

  it('names exactly one leader per epoch, whatever racing deciders\' requests go through', async () => {
    const faults: Fault[] = ['none', 'delay', 'lost-response', 'fail-before', 'duplicate'];
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 2, max: 6 }), fc.array(fc.record({ fault: fc.constantFrom(...faults), delayMs: fc.integer({ min: 0, max: 5 }) }), { minLength: 1, maxLength: 40 }), async (n, plan) => {
        let i = 0;
        const store = new FaultyStore(() => plan[i++ % plan.length]!);
        const deciders = Array.from({ length: n }, (_, k) => new ObjectStoreDecisions(store, 'main'));
        const outcomes = await Promise.all(deciders.map((d, k) => d.claim(leader(2, `standby-${k}`, `obs-${k}`)).catch((e: unknown) => e as Error)));
        const stored = await new ObjectStoreDecisions(store, 'main').leader(2);
        const answered = outcomes.filter((o): o is Exclude<typeof o, Error> => !(o instanceof Error));
        // Everyone who got an answer got the same leader, and at most one of them won — the one it names.
        for (const o of answered) expect(o.leader).toEqual(stored);
        const winners = answered.filter((o) => o.won);
        expect(winners.length).toBeLessThanOrEqual(1);
        if (winners[0]) expect(winners[0].leader.decidedBy).toBe(stored!.decidedBy);
        // Whoever failed, failed with the store's typed error, and a record landed only if someone tried it.
        for (const o of outcomes) if (o instanceof Error) expect(o).toBeInstanceOf(StoreUnavailableError);
        if (answered.length > 0) expect(stored).toBeDefined();
      }),
      { numRuns: 150 },
    );
  });

  it('counts each configured observer\'s newest vote, and a majority of all configured observers', async () => {
    const log = new ObjectStoreDecisions(new MemoryStore(), 'main');
    const observers = ['a', 'b', 'c'];
    await log.vote(vote('a', 0, 'down'));
    await log.vote(vote('b', 0, 'down'));
    await log.vote(vote('b', 1, 'up'));
    await log.vote(vote('stranger', 0, 'down'));
    expect(tally(await log.votes(1), observers)).toEqual({ down: ['a'], needed: 2, reached: false });
    await log.vote(vote('c', 0, 'down'));
    expect(tally(await log.votes(1), observers)).toEqual({ down: ['a', 'c'], needed: 2, reached: true });
    // A vote number is written once.
    await expect(log.vote(vote('c', 0, 'up'))).rejects.toBeInstanceOf(ObjectConflictError);
    // Votes of another epoch do not count.
    expect(await log.votes(2)).toEqual([]);
  });

  it('an observer takes the primary lease as ended only a margin after the holder\'s own deadline passed', async () => {
    let endings = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.record({ step: fc.constantFrom('advance', 'renew', 'look'), ms: fc.integer({ min: 0, max: 4000 }), latency: fc.integer({ min: 0, max: 3000 }), lost: fc.boolean(), fails: fc.boolean() }), { minLength: 5, maxLength: 60 }),
        async (steps) => {
          const store = new ClockedStore();
          const clock = (): number => store.now;
          const log = new ObjectStoreDecisions(store, 'main');
          const ttlMs = 10_000;
          const marginMs = 5_000;
          const lease = await log.acquireLease(1, { ttlMs, clock });
          const watch = log.watchLease(1, { clock, marginMs: () => marginMs });
          let deadline = lease.validUntil()!;
          try {
            for (const s of steps) {
              if (s.step === 'advance') store.now += s.ms;
              else if (s.step === 'renew') {
                store.next = s;
                await lease.renew();
                store.next = undefined;
              } else if ((await watch.ended()) === true) {
                // The watchdog fences at the newest deadline the holder ever had; the observer must be a margin past it.
                expect(store.now - deadline).toBeGreaterThanOrEqual(marginMs);
                endings++;
              }
              deadline = Math.max(deadline, lease.validUntil() ?? deadline);
            }
          } finally {
            await lease.release();
          }
        },
      ),
      { numRuns: 200 },
    );
    expect(endings).toBeGreaterThan(0);
  });
});
