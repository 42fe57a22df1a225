/**
 * Failsafe: the promise rules as a property over interleavings — a primary
 * cut off from the store that runs on promises is never still up when an
 * observer names the next leader — and the observers' HTTP endpoint with the
 * guard's client: majorities, refusals, the token, closes kept on disk.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { FailsafeMajorityError, FailsafePromises, FailsafeServer, HttpFailsafeQuorum, majority, type ObserverView } from '@coffer/failover';

const TTL = 10_000;
const MARGIN = 5_000;

type Action =
  | { kind: 'advance'; ms: number }
  | { kind: 'round'; reach: boolean[] }
  | { kind: 'down'; o: number; delay: number }
  | { kind: 'up'; o: number }
  | { kind: 'list'; o: number }
  | { kind: 'decide'; o: number }
  | { kind: 'claim'; o: number }
  | { kind: 'restart'; o: number };

const action = (n: number): fc.Arbitrary<Action> =>
  fc.oneof(
    { weight: 2, arbitrary: fc.record({ kind: fc.constant('advance' as const), ms: fc.integer({ min: 0, max: 4000 }) }) },
    { weight: 3, arbitrary: fc.record({ kind: fc.constant('round' as const), reach: fc.array(fc.boolean(), { minLength: n, maxLength: n }) }) },
    { weight: 4, arbitrary: fc.record({ kind: fc.constant('down' as const), o: fc.nat(n - 1), delay: fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 3000 })) }) },
    { weight: 2, arbitrary: fc.record({ kind: fc.constant('up' as const), o: fc.nat(n - 1) }) },
    { weight: 3, arbitrary: fc.record({ kind: fc.constant('list' as const), o: fc.nat(n - 1) }) },
    { weight: 3, arbitrary: fc.record({ kind: fc.constant('decide' as const), o: fc.nat(n - 1) }) },
    { weight: 3, arbitrary: fc.record({ kind: fc.constant('claim' as const), o: fc.nat(n - 1) }) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant('restart' as const), o: fc.nat(n - 1) }) },
  );

/**
 * The model: epoch 1 names P; P's lease was last renewed at 0 and the store is out of its reach from then on;
 * the observers reach the store (votes land after a delay) and P asks them for promises in rounds. Fails
 * when an observer names the next leader while P still runs on promises.
 */
async function simulate(n: number, actions: readonly Action[]): Promise<void> {
  // Epoch 1 names P; P's lease was last renewed at 0 and the store is out of its reach from then on.
  let now = 0;
  const clock = () => now;
  // Observers have run long enough at the start (a real one: since before the outage).
  now = -(TTL + MARGIN);
  const observers = await Promise.all(
    Array.from({ length: n }, async () => ({ promises: await FailsafePromises.open({ ttlMs: TTL, marginMs: MARGIN, clock }), voted: false, down: false, listed: false })),
  );
  now = 0;
  /** Votes as the store holds them: each observer's, with when they land. */
  const stored: { o: number; seq: number; verdict: 'down' | 'up'; at: number }[] = [];
  // Up on its lease until TTL, and on promises until `promisedUntil`; a claim while the lease holds is no
  // harm (the new primary waits for the lease to end), a claim while promises hold would be.
  let promisedUntil = -Infinity;
  const view = (i: number): ObserverView => ({ epoch: 1, node: 'p', votedInEpoch: observers[i]!.voted });
  // A decision listed and claimed at once is a list and a claim with nothing between.
  const steps = actions.flatMap((a): Action[] => (a.kind === 'decide' ? [{ kind: 'list', o: a.o }, { kind: 'claim', o: a.o }] : [a]));
  for (const a of steps) {
    switch (a.kind) {
      case 'decide':
        break;
      case 'advance':
        now += a.ms;
        break;
      case 'round': {
        // The guard asks while it still runs; a majority keeps it up until the round's start + ttl.
        if (now >= Math.max(TTL, promisedUntil)) break;
        const s = now;
        const yes = a.reach.filter((r, i) => r && observers[i]!.promises.ask(1, 'p', view(i)).granted).length;
        if (yes >= majority(n)) promisedUntil = Math.max(promisedUntil, s + TTL);
        break;
      }
      case 'down': {
        const o = observers[a.o]!;
        if (o.promises.withholdFrom() !== undefined) break;
        o.voted = true;
        o.down = true;
        stored.push({ o: a.o, seq: stored.length, verdict: 'down', at: now + a.delay });
        break;
      }
      case 'up': {
        const o = observers[a.o]!;
        if (!o.down) break;
        o.down = false;
        stored.push({ o: a.o, seq: stored.length, verdict: 'up', at: now });
        break;
      }
      case 'list': {
        // An observer decides only after its own "down", and not while it keeps a promise; it lists the
        // votes, looks at the standbys, and claims later, on what it listed.
        const o = observers[a.o]!;
        if (!o.down || o.promises.withholdFrom() !== undefined) break;
        const newest = new Map<number, 'down' | 'up'>();
        for (const v of stored) if (v.at <= now) newest.set(v.o, v.verdict);
        o.listed = [...newest.values()].filter((v) => v === 'down').length >= majority(n);
        break;
      }
      case 'claim': {
        const o = observers[a.o]!;
        // A leader of epoch 2 is named now: the old primary must no longer run on promises.
        if (o.listed) expect(promisedUntil, `claimed at ${now} with the primary up on promises until ${promisedUntil}`).toBeLessThanOrEqual(now);
        o.listed = false;
        break;
      }
      case 'restart': {
        // A restarted observer knows only what landed; a write still in flight lands within the delay bound (3 s < ttl + margin).
        const landed = stored.filter((v) => v.o === a.o && v.at <= now);
        observers[a.o] = { promises: await FailsafePromises.open({ ttlMs: TTL, marginMs: MARGIN, clock }), voted: landed.length > 0, down: landed.at(-1)?.verdict === 'down', listed: false };
        break;
      }
    }
  }
}

describe('failsafe promises', () => {
  it('never leave the primary up when an observer may name the next leader, whatever the interleaving of rounds, votes, claims and restarts', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(3, 3, 5).chain((n) => fc.tuple(fc.constant(n), fc.array(action(n), { maxLength: 30 }))),
        ([n, actions]) => simulate(n, actions),
      ),
      { numRuns: 5000 },
    );
  });

  it('hold in the interleavings weaker rules lose: a vote while a promise is live, a promise after a "down" an "up" replaced, a vote by an observer that restarted', async () => {
    // Granted by b and c; then b votes down beside a, and a names the next leader.
    await simulate(3, [{ kind: 'round', reach: [false, true, true] }, { kind: 'down', o: 0, delay: 0 }, { kind: 'down', o: 1, delay: 0 }, { kind: 'list', o: 0 }, { kind: 'claim', o: 0 }]);
    // a and b vote down; a lists them; b votes up again, and with c promises; a names the next leader on what it listed.
    await simulate(3, [
      { kind: 'down', o: 0, delay: 0 },
      { kind: 'down', o: 1, delay: 0 },
      { kind: 'list', o: 0 },
      { kind: 'up', o: 1 },
      { kind: 'round', reach: [true, true, true] },
      { kind: 'claim', o: 0 },
    ]);
    // b promises, restarts (forgetting it), and votes down beside a: a restarted observer keeps the promises it may have given.
    await simulate(3, [{ kind: 'down', o: 0, delay: 0 }, { kind: 'round', reach: [false, true, true] }, { kind: 'restart', o: 1 }, { kind: 'down', o: 1, delay: 0 }, { kind: 'decide', o: 0 }]);
  });

  it('grant only to the primary the newest epoch names, by an observer that never voted on it, has run a promise long and has not closed it; closes survive a restart', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'coffer-failsafe-'));
    try {
      let now = 0;
      const stateFile = join(dir, 'state', 'main-a.json');
      const p = await FailsafePromises.open({ ttlMs: TTL, marginMs: MARGIN, clock: () => now, stateFile });
      const view: ObserverView = { epoch: 3, node: 'db1', votedInEpoch: false };
      expect(p.ask(3, 'db1', view)).toMatchObject({ granted: false, reason: expect.stringMatching(/has run 0\.0 s/) });
      // Just started: it may have promised before, so it keeps any such promise — no vote, no leader named.
      expect(p.withholdFrom()).toBe(0);
      expect(p.remainingThrough(1)).toBe(TTL + MARGIN);
      now = TTL + MARGIN;
      expect(p.ask(3, 'db1', view)).toEqual({ granted: true, ms: TTL + MARGIN });
      expect(p.ask(3, 'db2', view)).toMatchObject({ granted: false, reason: expect.stringMatching(/epoch this observer knows is 3, naming db1/) });
      expect(p.ask(2, 'db1', view)).toMatchObject({ granted: false });
      expect(p.ask(3, 'db1', { ...view, votedInEpoch: true })).toMatchObject({ granted: false, reason: expect.stringMatching(/voted on epoch 3/) });
      expect(p.withholdFrom()).toBe(3);
      now += 4000;
      expect(await p.close(3)).toBe(TTL + MARGIN - 4000);
      expect(p.ask(3, 'db1', view)).toMatchObject({ granted: false, reason: expect.stringMatching(/closed/) });
      now += TTL + MARGIN;
      expect(p.withholdFrom()).toBeUndefined();
      const again = await FailsafePromises.open({ ttlMs: TTL, marginMs: MARGIN, clock: () => now, stateFile });
      now += TTL + MARGIN;
      expect(again.closed).toBe(3);
      expect(again.ask(3, 'db1', view)).toMatchObject({ granted: false, reason: expect.stringMatching(/closed/) });
      expect(again.ask(4, 'db2', { epoch: 4, node: 'db2', votedInEpoch: false })).toMatchObject({ granted: true });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('failsafe endpoints', () => {
  const servers: FailsafeServer[] = [];
  afterEach(async () => {
    for (const s of servers.splice(0)) await s.stop().catch(() => undefined);
  });

  async function observers(token: string | undefined, view: ObserverView) {
    let now = 0;
    const names = ['a', 'b', 'c'];
    const endpoints: Record<string, string> = {};
    const promises: FailsafePromises[] = [];
    for (const name of names) {
      const p = await FailsafePromises.open({ ttlMs: TTL, marginMs: MARGIN, clock: () => now });
      promises.push(p);
      const s = await FailsafeServer.start({ promises: p, cluster: 'main', view: () => view, listen: '127.0.0.1:0', ...(token ? { token } : {}) });
      servers.push(s);
      endpoints[name] = s.address;
    }
    // Observers that have run a promise's length.
    now = TTL + MARGIN;
    return { endpoints, promises, tick: (ms: number) => (now += ms) };
  }

  it('a majority of promises keeps the primary up; too few observers, a wrong token or another epoch do not; the token appears in no answer', async () => {
    const token = 'failsafe-token-8c41';
    const { endpoints } = await observers(token, { epoch: 2, node: 'db1', votedInEpoch: false });
    const quorum = new HttpFailsafeQuorum({ cluster: 'main', endpoints, timeoutMs: 1000, token });
    expect(await quorum.promise(2, 'db1')).toMatchObject({ granted: true });
    // Each says what it knows and promised.
    expect((await quorum.states()).a).toEqual({ epoch: 2, node: 'db1', closedThrough: 0, promises: [{ epoch: 2, remainingMs: TTL + MARGIN }], promising: true });
    const refused = await quorum.promise(3, 'db1');
    expect(refused.granted).toBe(false);
    expect(Object.values(refused.no).join('\n')).toMatch(/newest epoch this observer knows is 2/);
    const wrong = await new HttpFailsafeQuorum({ cluster: 'main', endpoints, timeoutMs: 1000, token: 'not it' }).promise(2, 'db1');
    expect(wrong.granted).toBe(false);
    expect(Object.values(wrong.no).join('\n')).toMatch(/HTTP 401/);
    expect(JSON.stringify(wrong)).not.toContain(token);
    expect((await new HttpFailsafeQuorum({ cluster: 'other', endpoints, timeoutMs: 1000, token }).promise(2, 'db1')).granted).toBe(false);
    // One observer gone: two of three still make a majority; two gone: no promise, and each reason says why.
    await servers[0]!.stop();
    expect(await quorum.promise(2, 'db1')).toMatchObject({ granted: true, yes: ['b', 'c'] });
    await servers[1]!.stop();
    const few = await quorum.promise(2, 'db1');
    expect(few).toMatchObject({ granted: false, yes: ['c'] });
    expect(Object.keys(few.no).sort()).toEqual(['a', 'b']);
    expect((await quorum.states()).a).toMatchObject({ error: expect.stringMatching(/127\.0\.0\.1/) });
  });

  it("a close reaches a majority and says how long the promises given last; without a majority it fails, naming each observer's reason", async () => {
    const { endpoints, tick } = await observers(undefined, { epoch: 2, node: 'db1', votedInEpoch: false });
    const quorum = new HttpFailsafeQuorum({ cluster: 'main', endpoints, timeoutMs: 1000 });
    expect((await quorum.promise(2, 'db1')).granted).toBe(true);
    tick(1000);
    const closed = await quorum.close(2);
    expect(closed.closed.length).toBeGreaterThanOrEqual(majority(3));
    expect(closed.remainingMs).toBe(TTL + MARGIN - 1000);
    expect((await quorum.promise(2, 'db1')).granted).toBe(false);
    await servers[0]!.stop();
    await servers[1]!.stop();
    const e = await quorum.close(2).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(FailsafeMajorityError);
    expect((e as Error).message).toMatch(/a: .*127\.0\.0\.1/);
  });
});
