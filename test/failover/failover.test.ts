/**
 * Failover end to end with real parts (see `test/support/failover-topology.ts`):
 * a primary and a streaming standby built by `coffer restore --standby`, three
 * observers and two guards as `coffer failover` processes with the policy's
 * default timings, BIND serving the name clients write through.
 *
 * - SIGKILL of the primary's postmaster: the standby is promoted, the old
 *   primary fenced, the name moved; RTO and RPO reported — RPO 0 with a
 *   synchronous standby.
 * - (The primary frozen or cut off: test/chaos/failover-split.test.ts.)
 * - One lost probe, a slow store, an observer down: no failover.
 */
import { access, readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { postmasterPid } from '@coffer/engine';
import { processesIn, type FailoverReport } from '@coffer/failover';
import { FaultProxy } from '../support/fault-proxy.js';
import { ADDRESSES, NAME, Topology, topologyScope } from '../support/failover-topology.js';
import { coffer } from '../support/cli.js';
import { cofferAsPostgres } from '../support/pg.js';
import { s3Server } from '../support/s3.js';
import { TcpProxy } from '../support/tcp-proxy.js';
import { until } from '../support/until.js';

const scope = topologyScope();
const cleanups = scope.cleanups;

/** Waits for a write through the name to land on db2, failing with every role's output. */
async function newPrimaryWrites(w: ReturnType<Topology['writer']>): Promise<void> {
  await until(() => w.last()?.address === ADDRESSES.db2, 'a write accepted through the name by the new primary', 90_000, 50).catch((e: Error) => {
    throw new Error(`${e.message}\n${scope.t!.logs.join('\n')}`);
  });
}

async function lostCommits(w: ReturnType<Topology['writer']>): Promise<number> {
  const present = new Set((await scope.t!.sql<{ id: string }>('db2', 'SELECT id::text FROM commits')).map((r) => Number(r.id)));
  return w.acked.filter((a) => !present.has(a.id)).length;
}

describe('failover', () => {
  for (const synchronous of [false, true]) {
    it(`SIGKILL of the primary (${synchronous ? 'synchronous' : 'asynchronous'} standby): the standby is promoted, the old primary fenced, the name moved, writes through it resume; RTO and RPO reported`, async () => {
      const t = (scope.t = await Topology.build('coffer-failover-', { synchronous }));
      await t.startAll();
      const w = t.writer('clients', 'name');
      // Steady writing and probing: no vote, no new epoch, the name where it was.
      await new Promise((r) => setTimeout(r, 3000));
      expect((await t.decisions.current())!.epoch).toBe(1);
      expect(await t.decisions.votes(1)).toEqual([]);
      expect(w.last()?.address).toBe(ADDRESSES.db1);

      const killedAt = performance.now();
      process.kill(postmasterPid(t.primary.data)!, 'SIGKILL');
      await newPrimaryWrites(w);
      const rtoSeconds = (w.last()!.at - killedAt) / 1000;
      await w.stop();

      const leader = (await t.decisions.current())!;
      expect(leader).toMatchObject({ epoch: 2, node: 'db2', reason: 'failover', previous: 'db1' });
      expect(leader.votes.length).toBeGreaterThanOrEqual(2);
      expect(rtoSeconds).toBeLessThan(30);
      expect(await t.bind.addresses(NAME)).toEqual([ADDRESSES.db2]);
      // The old primary is fenced: nothing runs in its data directory, and it would start as a standby.
      expect(processesIn(t.primary.data)).toEqual([]);
      await access(join(t.primary.data, 'standby.signal'));
      // Archive fencing: the old primary's last segment reaches past the switch point in the new timeline's
      // history (which the new primary archived first): wal-push refuses it.
      await until(async () => Number((await scope.t!.sql<{ n: string }>('db2', 'SELECT archived_count AS n FROM pg_stat_archiver'))[0]!.n) > 0, "the new primary to archive its timeline's history", 30_000, 100);
      const oldWal = (await readdir(join(t.primary.data, 'pg_wal'))).filter((n) => /^00000001[0-9A-F]{16}$/.test(n)).sort().at(-1)!;
      let push = { status: 0 as number | null, stderr: '' };
      await until(async () => (push = await cofferAsPostgres(['--repo', scope.t!.repo, 'wal-push', join(scope.t!.primary.data, 'pg_wal', oldWal)], { COFFER_PASSPHRASE: 'failover passphrase' })).status === 21, 'wal-push to refuse the old timeline past the switch point', 30_000, 250).catch(async (e: Error) => {
        const archiver = await scope.t!.sql('db2', "SELECT archived_count, last_archived_wal, failed_count, last_failed_wal, current_setting('archive_mode') AS mode, current_setting('archive_command') AS cmd FROM pg_stat_archiver");
        throw new Error(`${e.message}: exit ${push.status}: ${push.stderr}\n${JSON.stringify(archiver)}\n${(await scope.t!.standby.log()).slice(-3000)}`);
      });
      expect(push.stderr).toMatch(/branched off it \(00000002\.history\)/);
      const lost = await lostCommits(w);
      if (synchronous) expect(lost).toBe(0);
      // The new primary's guard wrote the failover's report: each phase's time, the RPO in WAL bytes; as metrics too.
      const textfile = join(t.work.dir, 'failover.prom');
      let report: { stdout: string; stderr: string; status: number | null } = { stdout: '', stderr: '', status: null };
      await until(async () => (report = await coffer(['failover', 'report', '--policy', await scope.t!.policy(), '--json', '--metrics-textfile', textfile], scope.t!.roleEnv)).status === 0, 'the failover report', 30_000, 200).catch((e: Error) => {
        throw new Error(`${e.message}: ${report.stderr}\n${scope.t!.logs.join('\n')}`);
      });
      const r = JSON.parse(report.stdout) as FailoverReport;
      expect(r).toMatchObject({ epoch: 2, node: 'db2', previous: 'db1', reason: 'failover' });
      for (const phase of ['lastHealthy', 'detected', 'quorum', 'fenced', 'promoted', 'trafficMoved', 'firstWrite'] as const) expect(Date.parse(r.phases[phase]!)).toBeGreaterThan(0);
      expect(r.seconds.total).toBeGreaterThan(0);
      expect(r.seconds.total).toBeLessThan(rtoSeconds + 1);
      expect(r.rpoBytes).toBeDefined();
      if (synchronous) expect(r.rpoBytes).toBe(0);
      const metrics = await readFile(textfile, 'utf8');
      expect(metrics).toMatch(/^coffer_failover_rto_seconds\{.*\} [0-9.]+$/m);
      expect(metrics).toMatch(/^coffer_failover_promoted_seconds\{.*\} [0-9.]+$/m);
      const md = await coffer(['failover', 'report', '--policy', await t.policy()], t.roleEnv);
      expect(md.stdout).toContain('| first write accepted |');
      console.log(md.stdout);
      console.log(`failover (${synchronous ? 'synchronous' : 'asynchronous'} standby): RTO ${rtoSeconds.toFixed(1)} s (SIGKILL of the postmaster to the first write through the name on the new primary); RPO ${lost} of ${w.acked.length} acknowledged commits lost`);
      expect(t.logs.join('\n')).not.toContain(t.bind.secret);
    }, 300_000);
  }

  it('one lost probe, a slow store, an observer down: no failover', async () => {
    const t = (scope.t = await Topology.build('coffer-failover-flap-', { s3: true }));
    const store = await FaultProxy.start(s3Server().endpoint, { faults: ['slow'], slowMs: 2000 });
    const toDb1 = await TcpProxy.start(ADDRESSES.db1, t.port);
    cleanups.push(() => store.stop(), () => toDb1.stop());
    const role = { storeEndpoint: store.endpoint, nodeVia: { db1: toDb1.port } };
    await t.startAll({ db1: role, db2: role, 'region-a': role, 'region-b': role, witness: role });
    const w = t.writer('clients', 'name');
    // One lost probe: every observer's path to the primary down for just under a second.
    toDb1.cut();
    await new Promise((r) => setTimeout(r, 900));
    toDb1.heal();
    // A slow store: every request to it takes 2 s more, for 12 s (longer than the lease's time-to-live).
    store.failureRate = 1;
    await new Promise((r) => setTimeout(r, 12_000));
    store.failureRate = 0;
    // An observer down.
    t.role('watch --observer witness').kill('SIGKILL');
    await new Promise((r) => setTimeout(r, 5000));
    await w.stop();
    expect((await t.decisions.current())!.epoch).toBe(1);
    const down = (await t.decisions.votes(1)).filter((v) => v.verdict === 'down');
    expect(down.length, JSON.stringify(down)).toBeLessThan(2);
    expect(w.acked.every((a) => a.address === ADDRESSES.db1)).toBe(true);
    expect(t.primary.running()).toBe(true);
    // Writes went on through all of it, with at most short pauses.
    expect(w.acked.length).toBeGreaterThan(1000);
  }, 300_000);
});
