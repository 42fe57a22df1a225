/**
 * Failsafe with real parts: a primary that cannot reach the decision store
 * but reaches a majority of observers stays up on their promises — the
 * store out of its reach alone, then out of everyone's — and takes a fresh
 * lease when the store answers again; and a switchover while the primary
 * and the observers cannot see the store closes the old epoch first, so the
 * old primary is fenced before the new one takes a write (without the close
 * the observers, blind to the new epoch, would go on promising). (A primary cut off from the
 * store *and* the far observers still fences: test/chaos/failover-split.)
 *
 * The lease's time-to-live is 4 s here (margin 2 s): each outage lasts three
 * of them.
 */
import { describe, expect, it } from 'vitest';
import { postmasterPid, processAlive } from '@coffer/engine';
import { FaultProxy } from '../support/fault-proxy.js';
import { ADDRESSES, Topology, topologyScope } from '../support/failover-topology.js';
import { startCoffer } from '../support/cli.js';
import { s3Server } from '../support/s3.js';
import { until } from '../support/until.js';

const TTL_S = 4;
const OUTAGE_MS = 3 * TTL_S * 1000;

const scope = topologyScope();
const cleanups = scope.cleanups;

/** The longest time between two acknowledged writes from `from` on. */
function longestGap(acked: readonly { at: number }[], from: number): number {
  const after = acked.filter((a) => a.at >= from);
  let gap = 0;
  for (let i = 1; i < after.length; i++) gap = Math.max(gap, after[i]!.at - after[i - 1]!.at);
  return gap;
}

describe('failsafe', () => {
  it('the decision store out of the primary\'s reach, then out of everyone\'s: the primary stays up on the observers\' promises, no failover, and takes a fresh lease when the store answers again', async () => {
    const t = (scope.t = await Topology.build('coffer-failsafe-', { s3: true, ttlSeconds: TTL_S }));
    const primaryStore = await FaultProxy.start(s3Server().endpoint);
    const othersStore = await FaultProxy.start(s3Server().endpoint);
    cleanups.push(() => primaryStore.stop(), () => othersStore.stop());
    const others = { storeEndpoint: othersStore.endpoint };
    await t.startAll({ db1: { storeEndpoint: primaryStore.endpoint }, db2: others, 'region-a': others, 'region-b': others, witness: others });
    const guardLog = () => t.logs.find((l) => l.startsWith('--- guard --node db1'))!;
    const w = t.writer('clients', 'name');
    await new Promise((r) => setTimeout(r, 1000));
    const pid = postmasterPid(t.primary.data)!;

    for (const [what, cut] of [
      ['the primary alone', () => (primaryStore.down = true)],
      ['everyone', () => (primaryStore.down = othersStore.down = true)],
    ] as const) {
      const leases = (guardLog().match(/took a fresh primary lease/g) ?? []).length;
      const from = performance.now();
      cut();
      await new Promise((r) => setTimeout(r, OUTAGE_MS));
      const lastWrite = w.last()!;
      expect(lastWrite.address, `${what}: writes go to db1`).toBe(ADDRESSES.db1);
      expect((lastWrite.at - from) / 1000, `${what}: db1 still takes writes three lease times after the cut\n${t.logs.join('\n')}`).toBeGreaterThan(OUTAGE_MS / 1000 - 1);
      expect(longestGap(w.acked, from - 1000), `${what}: writes never stopped`).toBeLessThan(2000);
      expect(processAlive(pid)).toBe(true);
      primaryStore.down = othersStore.down = false;
      await until(() => (guardLog().match(/took a fresh primary lease/g) ?? []).length > leases, `${what}: a fresh lease once the store answers`, 30_000, 100).catch((e: Error) => {
        throw new Error(`${e.message}\n${t.logs.join('\n')}`);
      });
      console.log(`failsafe (store out of reach of ${what}): db1 took writes throughout ${(OUTAGE_MS / 1000).toFixed(0)} s (longest gap ${longestGap(w.acked, from - 1000).toFixed(0)} ms), then a fresh lease`);
    }
    await w.stop();
    expect(guardLog()).toMatch(/promised: the server stays up/);
    expect(guardLog()).not.toMatch(/"kind":"fenced"/);
    expect((await t.decisions.current())!.epoch).toBe(1);
    expect((await t.decisions.votes(1)).filter((v) => v.verdict === 'down')).toEqual([]);
    // The lease held again: observers see it alive.
    expect(await t.decisions.watchLease(1, { clock: () => performance.now() }).ended()).toBe(false);
    // Status shows what each observer knows and promised.
    const status = await startCoffer(['failover', 'status', '--policy', await t.policy()], t.roleEnv).done;
    expect(status.status, status.stderr).toBe(0);
    for (const o of ['region-a', 'region-b', 'witness']) expect(status.stdout).toMatch(new RegExp(`failsafe ${o}: knows epoch 1 \\(db1\\); (promised epoch 1 for \\d+ s more|no live promise)`));
  }, 300_000);

  it('a switchover while the primary and the observers cannot see the store: the new primary closes the old epoch at a majority and waits out the promises, so the old primary is fenced before the new one takes a write', async () => {
    const t = (scope.t = await Topology.build('coffer-failsafe-switch-', { s3: true, ttlSeconds: TTL_S }));
    // db1 and the observers reach the store through a proxy that goes down; db2 and the operator do not: the
    // observers cannot see the switchover's epoch, and would go on promising db1 if nobody closed its epoch.
    const cutStore = await FaultProxy.start(s3Server().endpoint);
    cleanups.push(() => cutStore.stop());
    const cut = { storeEndpoint: cutStore.endpoint };
    await t.startAll({ db1: cut, 'region-a': cut, 'region-b': cut, witness: cut });
    const oldPid = postmasterPid(t.primary.data)!;
    const clients = t.writer('clients', 'name');
    const oldSide = t.writer('old side', 'db1');
    // Writes straight at db2 succeed once it is promoted.
    const newSide = t.writer('new side', 'db2');
    await new Promise((r) => setTimeout(r, 1000));
    cutStore.down = true;
    // On promises now.
    await until(() => /promised: the server stays up/.test(t.logs.join('\n')), 'the primary on promises', 30_000, 100).catch((e: Error) => {
      throw new Error(`${e.message}\n${t.logs.join('\n')}`);
    });
    const s = startCoffer(['failover', 'switchover', '--policy', await t.policy(), '--to', 'db2', '--wait', '120'], t.roleEnv);
    const r = await s.done;
    expect(r.status, `${r.stderr}\n${t.logs.join('\n')}`).toBe(0);
    await until(() => newSide.acked.length > 0, 'a write on the promoted db2', 60_000, 50).catch((e: Error) => {
      throw new Error(`${e.message}\n${t.logs.join('\n')}`);
    });
    await new Promise((res) => setTimeout(res, 2000));
    await Promise.all([oldSide.stop(), newSide.stop()]);
    const firstNew = newSide.acked[0]!;
    expect(oldSide.acked.filter((a) => a.at >= firstNew.at).length, `the old primary took writes after the new one's first\n${t.logs.join('\n')}`).toBe(0);
    await until(() => clients.last()?.address === ADDRESSES.db2, 'a write through the name on db2', 60_000, 50).catch((e: Error) => {
      throw new Error(`${e.message}\n${t.logs.join('\n')}`);
    });
    await clients.stop();
    const log = t.logs.join('\n');
    expect(log).toMatch(/closed epoch 1/);
    expect(log).toMatch(/no majority promised/);
    expect(processAlive(oldPid), 'the old primary stopped').toBe(false);
    console.log(`failsafe switchover: the old primary's last write ${((firstNew.at - oldSide.acked.at(-1)!.at) / 1000).toFixed(1)} s before the new primary's first`);
  }, 300_000);
});
