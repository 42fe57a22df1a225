/**
 * The failover decision on real radosgw buckets: plain, versioned and with
 * Object Lock. Racing deciders (each with its own client) name different
 * standbys for the same epoch; exactly one record holds it, every decider
 * that got an answer reads that one, and a reader that comes later reads it
 * too — also through a proxy that loses answers, delivers requests twice,
 * fails and slows them.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ObjectStoreDecisions, type ClaimOutcome, type LeaderRecord } from '@coffer/failover';
import { FaultProxy } from '../support/fault-proxy.js';
import { newBucket, s3Server, s3Store } from '../support/s3.js';

const DECIDERS = 5;
const EPOCHS = 6;

const record = (epoch: number, k: number): LeaderRecord => ({
  format: 1,
  cluster: 'race',
  epoch,
  node: `standby-${k}`,
  reason: 'failover',
  decidedBy: `observer-${k}`,
  votes: [],
  host: 'test',
  pid: k,
  writtenAt: new Date().toISOString(),
});

let proxy: FaultProxy;
beforeAll(async () => {
  proxy = await FaultProxy.start(s3Server().endpoint, { slowMs: 200, faults: ['error-before', 'error-after', 'slowdown', 'reset-response', 'reset-request', 'slow', 'duplicate'] });
});
afterAll(async () => {
  await proxy?.stop();
});

describe('racing deciders on radosgw', () => {
  for (const kind of ['plain', 'versioned', 'object-lock'] as const) {
    for (const faulty of [false, true]) {
      it(`one leader per epoch on a ${kind} bucket${faulty ? ', through lost answers, duplicates, failures and delays' : ''}`, async () => {
        const bucket = await newBucket(kind === 'versioned' ? { versioning: true } : kind === 'object-lock' ? { objectLock: true } : {});
        proxy.failureRate = faulty ? 0.3 : 0;
        const deciders = Array.from({ length: DECIDERS }, () => new ObjectStoreDecisions(s3Store(bucket, { prefix: 'decide', ...(faulty ? { endpoint: proxy.endpoint } : {}) }), 'race'));
        const reader = new ObjectStoreDecisions(s3Store(bucket, { prefix: 'decide' }), 'race');
        for (let epoch = 2; epoch < 2 + EPOCHS; epoch++) {
          const outcomes = await Promise.all(deciders.map((d, k) => d.claim(record(epoch, k)).catch((e: unknown) => e as Error)));
          const stored = await reader.leader(epoch);
          expect(stored, `epoch ${epoch}`).toBeDefined();
          const answered = outcomes.filter((o): o is ClaimOutcome => !(o instanceof Error));
          expect(answered.length, `epoch ${epoch}: ${outcomes.filter((o) => o instanceof Error).map((e) => (e as Error).message).join('; ')}`).toBeGreaterThan(0);
          for (const o of answered) expect(o.leader).toEqual(stored);
          const winners = answered.filter((o) => o.won);
          expect(winners.length).toBeLessThanOrEqual(1);
          if (!faulty) expect(winners).toHaveLength(1);
          for (const w of winners) expect(w.leader.decidedBy).toBe(stored!.decidedBy);
          expect((await reader.current())!.epoch).toBe(epoch);
        }
      }, 120_000);
    }
  }
});
