/**
 * Anti-flapping and majorities as properties: "down" exactly when the last
 * `misses` probes failed within the window; a success clears it; a majority
 * counts every configured observer's newest vote and nobody else's.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { chooseCandidate, FailureDetector, majority, tally, type VoteRecord } from '@coffer/failover';

describe('failure detector', () => {
  it('says down exactly when the last `misses` probes all failed within the window', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 5 }), fc.integer({ min: 100, max: 10_000 }), fc.array(fc.record({ ok: fc.boolean(), gap: fc.integer({ min: 0, max: 3000 }) }), { maxLength: 60 }), (misses, windowMs, probes) => {
        let now = 0;
        const d = new FailureDetector({ misses, windowMs, clock: () => now });
        const seen: { ok: boolean; at: number }[] = [];
        for (const p of probes) {
          now += p.gap;
          const health = d.record(p.ok, 'x');
          seen.push({ ok: p.ok, at: now });
          // The model: the failures since the last success, those still inside the window.
          const lastOk = seen.map((s) => s.ok).lastIndexOf(true);
          const recent = seen.slice(lastOk + 1).filter((s) => s.at >= now - windowMs).length;
          expect(health).toBe(recent >= misses ? 'down' : recent > 0 ? 'suspect' : 'up');
        }
      }),
    );
  });

  it('one lost probe among good ones never says down (misses ≥ 2)', () => {
    fc.assert(
      fc.property(fc.integer({ min: 2, max: 5 }), fc.array(fc.boolean(), { maxLength: 80 }), (misses, probes) => {
        // No two failures in a row: each lost probe is followed by a good one.
        const isolated = probes.map((ok, i) => ok || (i > 0 && !probes[i - 1] ? true : ok));
        let now = 0;
        const d = new FailureDetector({ misses, windowMs: 30_000, clock: () => (now += 1000) });
        for (const ok of isolated) expect(d.record(ok)).not.toBe('down');
      }),
    );
  });
});

const vote = (observer: string, seq: number, verdict: 'down' | 'up'): VoteRecord => ({ format: 1, cluster: 'c', epoch: 1, observer, seq, verdict, misses: 0, detail: '', host: 'h', pid: 1, writtenAt: '' });

describe('majorities', () => {
  it('counts each configured observer by its newest vote, and reaches a majority only with more than half of all of them', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 7 }), fc.array(fc.record({ who: fc.integer({ min: 0, max: 9 }), verdict: fc.constantFrom<'down' | 'up'>('down', 'up') }), { maxLength: 40 }), (n, cast) => {
        const observers = Array.from({ length: n }, (_, i) => `o${i}`);
        const seqs = new Map<string, number>();
        const votes = cast.map((c) => {
          const who = `o${c.who}`;
          const seq = (seqs.get(who) ?? -1) + 1;
          seqs.set(who, seq);
          return vote(who, seq, c.verdict);
        });
        // Shuffled: order in the store says nothing.
        const t = tally([...votes].reverse(), observers);
        const newest = new Map<string, 'down' | 'up'>();
        for (const v of votes) if (observers.includes(v.observer)) newest.set(v.observer, v.verdict);
        const down = [...newest].filter(([, v]) => v === 'down').map(([o]) => o).sort();
        expect(t.down).toEqual(down);
        expect(t.needed).toBe(majority(n));
        expect(t.reached).toBe(down.length * 2 > n);
      }),
    );
  });

  it('chooses the most advanced standby in recovery within the lag bound, never a primary', () => {
    const s = (received: string, inRecovery = true) => ({ inRecovery, receivedLsn: received, replayedLsn: received, streaming: true, timeline: 1, receivedTimeline: 1, currentLsn: undefined });
    expect(chooseCandidate([{ node: 'a', state: s('0/3000000') }, { node: 'b', state: s('0/5000000') }, { node: 'c', state: s('0/9000000', false) }], '0/5000100', 1 << 20)?.node).toBe('b');
    expect(chooseCandidate([{ node: 'a', state: s('0/3000000') }], '0/5000000', 1 << 20)).toBeUndefined();
    expect(chooseCandidate([{ node: 'a', state: undefined }, { node: 'b', state: s('0/1000000') }], undefined, 0)?.node).toBe('b');
  });
});
