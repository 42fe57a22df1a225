/**
 * Failover in the crash matrix: no split brain. The primary's guard frozen
 * (SIGSTOP), or the primary with its guard and its observer cut off from
 * everyone else (store and observers unreachable, clients on its side still
 * connected): its watchdog fences it within the lease time, the standby is
 * promoted only after, and a client on the old side never commits after the
 * new primary's first write through the DNS name.
 *
 * Failsafe is on: the cut-off primary asks every observer for promises, and
 * only its own side's answers — no majority.
 *
 * `sized(1, 20)` trials of each, every one on a fresh topology (see
 * `test/support/failover-topology.ts`): one under `npm test`, twenty under
 * `npm run chaos -- --long`.
 */
import { describe, expect, it } from 'vitest';
import { FaultProxy } from '../support/fault-proxy.js';
import { ADDRESSES, Topology, topologyScope } from '../support/failover-topology.js';
import { s3Server } from '../support/s3.js';
import { TcpProxy } from '../support/tcp-proxy.js';
import { until } from '../support/until.js';
import { addFigures, sized } from './figures.js';

const TRIALS = sized(1, 20);

const scope = topologyScope();
const cleanups = scope.cleanups;

/**
 * Cuts the primary off with `cut`, then checks that the old primary stopped accepting writes before the new
 * one accepted its first: a client on the old side (straight at db1) never commits after the first commit
 * through the name on db2. Returns the old side's commits after that moment (0 unless split).
 */
async function noSplitBrain(cut: () => void, what: string): Promise<number> {
  const clients = scope.t!.writer('clients', 'name');
  await new Promise((r) => setTimeout(r, 3000));
  const oldSide = scope.t!.writer('old side', 'db1');
  await new Promise((r) => setTimeout(r, 500));
  const cutAt = performance.now();
  cut();
  await until(() => clients.last()?.address === ADDRESSES.db2, 'a write accepted through the name by the new primary', 90_000, 50).catch((e: Error) => {
    throw new Error(`${e.message}\n${scope.t!.logs.join('\n')}`);
  });
  await new Promise((r) => setTimeout(r, 1000));
  await oldSide.stop();
  await clients.stop();
  const firstNew = clients.acked.find((a) => a.address === ADDRESSES.db2)!;
  const lastOld = oldSide.acked.at(-1)!;
  expect(lastOld, 'the old side wrote before the cut').toBeDefined();
  const split = oldSide.acked.filter((a) => a.at >= firstNew.at).length;
  expect(split, `${what}: the old primary accepted writes after the new primary's first`).toBe(0);
  // Fenced within the lease time (10 s) of the cut, plus scheduling slack.
  expect((lastOld.at - cutAt) / 1000).toBeLessThan(11);
  expect((await scope.t!.decisions.current())!.node).toBe('db2');
  console.log(`failover (${what}): old primary's last write ${((lastOld.at - cutAt) / 1000).toFixed(1)} s after the cut, the new primary's first ${((firstNew.at - cutAt) / 1000).toFixed(1)} s after`);
  return split;
}

describe('failover without split brain', () => {
  it(`the primary's guard frozen (SIGSTOP): its watchdog fences it within the lease time, before the standby is promoted (${TRIALS} trials)`, async () => {
    for (let trial = 0; trial < TRIALS; trial++) {
      const t = (scope.t = await Topology.build('coffer-failover-stop-'));
      await t.startAll();
      const guard = t.role('guard --node db1');
      const split = await noSplitBrain(() => guard.kill('SIGSTOP'), `guard frozen, trial ${trial + 1}`);
      await addFigures('failover', { trials: 1, kills: 1, lost: split });
      await t.close();
      scope.t = undefined;
    }
  }, 3_600_000);

  it(`the primary, its guard and its observer cut off from everyone: it fences itself within the lease time, before the standby is promoted (${TRIALS} trials)`, async () => {
    for (let trial = 0; trial < TRIALS; trial++) {
      const t = (scope.t = await Topology.build('coffer-failover-cut-', { s3: true }));
      // db1's guard and observer region-a reach the store through a proxy, and db1's guard reaches the far
      // observers' failsafe endpoints through one (its own side's observer, region-a, straight); region-b, the
      // witness and db2's guard reach db1 through one.
      const store = await FaultProxy.start(s3Server().endpoint);
      const toDb1 = await TcpProxy.start(ADDRESSES.db1, t.port);
      const toB = await TcpProxy.start('127.0.0.1', t.failsafePorts['region-b']!);
      const toWitness = await TcpProxy.start('127.0.0.1', t.failsafePorts.witness!);
      cleanups.push(() => store.stop(), () => toDb1.stop(), () => toB.stop(), () => toWitness.stop());
      const cutSide = { storeEndpoint: store.endpoint };
      const farSide = { nodeVia: { db1: toDb1.port } };
      await t.startAll({ db1: { ...cutSide, observerVia: { 'region-b': toB.port, witness: toWitness.port } }, 'region-a': cutSide, 'region-b': farSide, witness: farSide, db2: farSide });
      const split = await noSplitBrain(() => {
        store.down = true;
        toDb1.cut();
        toB.cut();
        toWitness.cut();
      }, `partition, trial ${trial + 1}`);
      // Failsafe asked, and its own side's observer alone promised: no majority, so it fenced.
      expect(t.logs.join('\n')).toMatch(/no majority promised/);
      await addFigures('failover', { trials: 1, storeFaults: 1, lost: split });
      for (const c of cleanups.splice(0)) await c();
      await t.close();
      scope.t = undefined;
    }
  }, 3_600_000);
});
