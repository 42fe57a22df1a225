/**
 * The weekly failover drill, `coffer drill failover`, with real parts: it
 * refuses to run unless the policy enables it, then switches over to the
 * standby and back under its probe writer. The old primary's guard rejoins
 * it after each switchover (the node's rejoin command: `coffer failover
 * rejoin`, then the server started). 0 commits lost, the original topology
 * at the end, and a report (JSON, markdown, SVG) with the client's longest
 * wait as the recovery time.
 */
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { RecoveryDrillReport } from '@coffer/verify';
import { ADDRESSES, NAME, Topology, topologyScope } from '../support/failover-topology.js';
import { coffer } from '../support/cli.js';

const scope = topologyScope();

describe('coffer drill failover', () => {
  it('is refused unless enabled; then a switchover and a fallback lose no commit and leave the topology as it was', async () => {
    const topo = (scope.t = await Topology.build('coffer-drill-failover-', { rejoin: true }));
    await topo.startAll();
    const reports = join(topo.work.dir, 'drills');

    // Not enabled: refused, nothing moved.
    const off = await coffer(['drill', 'failover', '--policy', await topo.policy(), '--reports', reports], topo.roleEnv);
    expect(off.status, off.stderr).toBe(3);
    expect(off.stderr).toContain('drills.failover.enabled');
    expect(await topo.decisions.current()).toMatchObject({ epoch: 1, node: 'db1' });

    const policy = await topo.policy({ extra: ['drills:', '  failover: { enabled: true, stepTimeoutSeconds: 150 }'] });
    const r = await coffer(['drill', 'failover', '--policy', policy, '--reports', reports, '--json'], topo.roleEnv);
    if (r.status !== 0) throw new Error(`drill failover: exit ${r.status}\n${r.stdout}\n${r.stderr}\n${topo.logs.join('\n')}`);
    const report = JSON.parse(r.stdout) as RecoveryDrillReport;
    expect(report).toMatchObject({ kind: 'failover', subject: 'main', ok: true, findings: [] });
    expect(report.phases.map((p) => p.name)).toEqual(['preflight', 'probe writer', 'switchover to db2', 'db1 streams from db2', 'switchover to db1', 'db2 streams from db1', 'checks', 'cleanup']);
    expect(report.rpo).toMatchObject({ commits: 0, met: true });
    expect(report.rto!.met).toBe(true);
    expect(report.checks.map((c) => [c.name, c.ok])).toEqual([
      ['no commit lost', true],
      ['primary', true],
      ['topology', true],
      ['cutover name', true],
    ]);
    const acknowledged = Number(/(\d+) commits acknowledged/.exec(report.checks[0]!.summary)![1]);
    expect(acknowledged).toBeGreaterThan(100);
    expect((await readdir(reports)).sort()).toEqual([`${report.id}.json`, `${report.id}.md`, `${report.id}.svg`]);
    expect(await readFile(join(reports, `${report.id}.md`), 'utf8')).toContain('## Post-mortem');

    // The original topology: db1 primary in epoch 3, db2 streaming from it, the name on db1; the probe table gone.
    expect(await topo.decisions.current()).toMatchObject({ epoch: 3, node: 'db1', reason: 'switchover' });
    expect((await topo.sql<{ r: boolean }>('db1', 'SELECT pg_is_in_recovery() AS r'))[0]!.r).toBe(false);
    expect((await topo.sql<{ n: string }>('db1', "SELECT count(*) AS n FROM pg_stat_replication WHERE application_name = 'db2' AND state = 'streaming'"))[0]!.n).toBe('1');
    expect(await topo.bind.addresses(NAME)).toEqual([ADDRESSES.db1]);
    expect((await topo.sql<{ t: string | null }>('db1', "SELECT to_regclass('coffer_drill_probe')::text AS t"))[0]!.t).toBeNull();
    console.log(`drill failover: ${acknowledged} commits, none lost; the longest wait for a commit ${report.rto!.seconds.toFixed(2)} s; ${report.phases.map((p) => `${p.name} ${p.seconds.toFixed(1)} s`).join(', ')}`);
  }, 900_000);
});
