/**
 * Planned switchover and fallback (the seeds' weekly drill) with real parts:
 * under a client writing through the DNS name, `coffer failover switchover
 * --to db2` stops the primary cleanly, promotes the standby once it has
 * received the shutdown checkpoint and moves the name; `coffer failover
 * rejoin` (pg_rewind) makes the old primary a standby of the new one; then
 * the same back to db1. No acknowledged commit is lost, and the topology
 * ends as it began: db1 primary, db2 streaming from it, the name on db1.
 */
import { describe, expect, it } from 'vitest';
import type { FailoverReport } from '@coffer/failover';
import { ADDRESSES, NAME, Topology, topologyScope } from '../support/failover-topology.js';
import { coffer } from '../support/cli.js';
import { cofferAsPostgres, debianInstall } from '../support/pg.js';
import { until } from '../support/until.js';

const scope = topologyScope();

describe('planned switchover and fallback', () => {
  it('switch over to the standby and back: 0 commits lost, the original topology at the end', async () => {
    const topo = (scope.t = await Topology.build('coffer-switchover-'));
    await topo.startAll();
    const policy = await topo.policy();
    const w = topo.writer('clients', 'name');
    await until(() => w.acked.length > 500, 'the client to write', 30_000, 50);

    /** The client's longest wait: between its last commit on one node and its first on the other. */
    const gaps: number[] = [];
    const switchTo = async (to: 'db1' | 'db2'): Promise<FailoverReport> => {
      const r = await coffer(['failover', 'switchover', '--policy', policy, '--to', to, '--json', '--wait', '90'], topo.roleEnv);
      if (r.status !== 0) throw new Error(`switchover to ${to}: exit ${r.status}: ${r.stderr}\n${topo.logs.join('\n')}`);
      const report = JSON.parse(r.stdout.slice(r.stdout.indexOf('{'))) as FailoverReport;
      expect(report).toMatchObject({ node: to, reason: 'switchover' });
      expect(report.rpoBytes ?? 0).toBe(0);
      await until(() => w.last()?.address === ADDRESSES[to], `a write through the name on ${to}`, 60_000, 50);
      const first = w.acked.findIndex((a, i) => a.address === ADDRESSES[to] && i > 0 && w.acked[i - 1]!.address !== ADDRESSES[to]);
      gaps.push((w.acked[first]!.at - w.acked[first - 1]!.at) / 1000);
      expect(report.seconds.total).toBeGreaterThan(0);
      expect(await topo.bind.addresses(NAME)).toEqual([ADDRESSES[to]]);
      return report;
    };
    const rejoin = async (node: 'db1' | 'db2'): Promise<void> => {
      const cluster = node === 'db1' ? topo.primary : topo.standby;
      const r = await cofferAsPostgres(['failover', 'rejoin', '--policy', policy, '--node', node, '--pgdata', cluster.data, '--pg-bin', debianInstall().bin], topo.roleEnv);
      if (r.status !== 0) throw new Error(`rejoin ${node}: exit ${r.status}: ${r.stderr}`);
      console.log(r.stdout);
      await cluster.start({ archive_mode: 'always', hot_standby: 'on', listen_addresses: ADDRESSES[node], port: topo.port });
      const primary = node === 'db1' ? 'db2' : 'db1';
      await until(
        async () => (await topo.sql<{ n: string }>(primary, "SELECT count(*) AS n FROM pg_stat_replication WHERE state = 'streaming'").catch(() => [{ n: '0' }]))[0]!.n === '1',
        `${node} to stream from ${primary}`,
        60_000,
        200,
      );
      expect((await topo.sql<{ r: boolean }>(node, 'SELECT pg_is_in_recovery() AS r'))[0]!.r).toBe(true);
      // primary_conninfo as rejoin wrote it: the primary's replication connection, this node's name, no password.
      expect((await topo.sql<{ c: string }>(node, "SELECT current_setting('primary_conninfo') AS c"))[0]!.c).toBe(`host=${ADDRESSES[primary]} port=${topo.port} user=postgres application_name=${node}`);
    };

    const there = await switchTo('db2');
    await rejoin('db1');
    const back = await switchTo('db1');
    await rejoin('db2');
    await w.stop();

    // Nothing acknowledged was lost, through both switches.
    const present = new Set((await topo.sql<{ id: string }>('db1', 'SELECT id::text FROM commits')).map((r) => Number(r.id)));
    expect(w.acked.filter((a) => !present.has(a.id))).toEqual([]);
    // The original topology: db1 primary in epoch 3, db2 a standby streaming from it, the name on db1.
    expect(await topo.decisions.current()).toMatchObject({ epoch: 3, node: 'db1', reason: 'switchover', previous: 'db2' });
    expect((await topo.sql<{ r: boolean }>('db1', 'SELECT pg_is_in_recovery() AS r'))[0]!.r).toBe(false);
    expect((await topo.sql<{ r: boolean }>('db2', 'SELECT pg_is_in_recovery() AS r'))[0]!.r).toBe(true);
    expect(await topo.bind.addresses(NAME)).toEqual([ADDRESSES.db1]);
    console.log(`switchover: the client waited ${gaps[0]!.toFixed(1)} s (to db2) and ${gaps[1]!.toFixed(1)} s (back to db1) between commits; named → first write ${there.seconds.total} s and ${back.seconds.total} s; ${w.acked.length} commits, none lost`);
  }, 600_000);
});
