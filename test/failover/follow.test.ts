/**
 * After a failover the surviving standby follows the new primary: a primary
 * (db1) and two asynchronous standbys (db2, db3), each with its guard. When
 * db1's postmaster is killed, the observers name the more advanced standby;
 * the other one's guard points its primary_conninfo at it (host and port
 * only: its application_name stays), and it streams the new timeline: a row
 * committed on the new primary after the failover reaches it. And the new
 * primary's guard takes the first base backup on the new timeline at once.
 */
import { describe, expect, it } from 'vitest';
import { postmasterPid } from '@coffer/engine';
import { ADDRESSES, Topology, topologyScope, type Node } from '../support/failover-topology.js';
import { coffer, startCoffer } from '../support/cli.js';
import { until } from '../support/until.js';

const scope = topologyScope();

describe('failover with two standbys', () => {
  it('the standby not promoted follows the new primary on its new timeline, and gets what it commits', async () => {
    const t = (scope.t = await Topology.build('coffer-follow-', { thirdNode: true, backupAfterPromotion: true }));
    await t.startAll();
    const w = t.writer('clients', 'name');
    await new Promise((r) => setTimeout(r, 2000));
    process.kill(postmasterPid(t.primary.data)!, 'SIGKILL');
    let leader: { epoch: number; node: string } | undefined;
    await until(async () => (leader = await t.decisions.current())!.epoch === 2 && (await t.decisions.report(2)) !== undefined, 'the failover to be decided and reported', 90_000, 200).catch((e: Error) => {
      throw new Error(`${e.message}\n${t.logs.join('\n')}`);
    });
    await w.stop();
    const promoted = leader!.node as Node;
    expect(['db2', 'db3']).toContain(promoted);
    const other: Node = promoted === 'db2' ? 'db3' : 'db2';
    // Its guard pointed it at the new primary, keeping its own name for synchronous_standby_names.
    await until(
      async () => {
        const [r] = await t.sql<{ host: string; tli: number; status: string }>(other, 'SELECT sender_host AS host, received_tli AS tli, status FROM pg_stat_wal_receiver');
        return r?.host === ADDRESSES[promoted] && r.tli === 2 && r.status === 'streaming';
      },
      `${other} to stream timeline 2 from ${promoted}`,
      60_000,
      200,
    ).catch((e: Error) => {
      throw new Error(`${e.message}\n${t.logs.join('\n')}`);
    });
    const [conninfo] = await t.sql<{ c: string }>(other, "SELECT current_setting('primary_conninfo') AS c");
    expect(conninfo!.c).toBe(`host=${ADDRESSES[promoted]} port=${t.port} user=postgres application_name=${other}`);
    const [named] = await t.sql<{ n: string }>(promoted, `SELECT count(*) AS n FROM pg_stat_replication WHERE application_name = '${other}' AND state = 'streaming'`);
    expect(named!.n).toBe('1');
    // A commit on the new primary after the failover reaches the standby that followed it.
    await t.sql(promoted, "INSERT INTO commits VALUES (-1, 'after the failover')");
    await until(async () => (await t.sql(other, 'SELECT 1 FROM commits WHERE id = -1')).length === 1, `the new primary's commit to reach ${other}`, 30_000, 100);
    // Every commit the new primary holds, the follower holds too once caught up.
    await until(
      async () => (await t.sql<{ n: string }>(other, 'SELECT count(*) AS n FROM commits'))[0]!.n === (await t.sql<{ n: string }>(promoted, 'SELECT count(*) AS n FROM commits'))[0]!.n,
      `${other} to hold every commit ${promoted} holds`,
      30_000,
      100,
    );
    // The guard says what it did, and (on its next look) that the standby streams the new timeline.
    const guardLog = () => t.logs.find((l) => l.startsWith(`--- guard --node ${other}\n`))!;
    expect(guardLog()).toMatch(new RegExp(`"kind":"following".*primary_conninfo now names ${promoted}`));
    await until(() => new RegExp(`"kind":"following".*streams from ${promoted} \\(timeline 2`).test(guardLog()), `${other}'s guard to see it stream from ${promoted}`, 10_000, 100).catch((e: Error) => {
      throw new Error(`${e.message}\n${guardLog()}`);
    });
    // Status shows each node as it answers: the new primary, the follower streaming and caught up, db1 silent.
    const st = await coffer(['failover', 'status', '--json', '--policy', await t.policy()], t.roleEnv);
    expect(st.status, st.stderr).toBe(0);
    const shown = JSON.parse(st.stdout) as { leader: { epoch: number; node: string }; nodes: { node: string; ok: boolean; role?: string; timeline?: number; streaming?: boolean; replayLagBytes?: number }[] };
    expect(shown.leader).toMatchObject({ epoch: 2, node: promoted });
    const byNode = new Map(shown.nodes.map((n) => [n.node, n]));
    expect(byNode.get('db1')).toMatchObject({ ok: false });
    expect(byNode.get(promoted)).toMatchObject({ ok: true, role: 'primary', timeline: 2 });
    expect(byNode.get(other)).toMatchObject({ ok: true, role: 'standby', timeline: 2, streaming: true });
    expect(byNode.get(other)!.replayLagBytes).toBeLessThan(1 << 20);
    // An agent with this policy looks at failover too: status and /metrics say the same.
    const agentPolicy = await t.policy({ extra: ['metrics: { listen: "127.0.0.1:0" }', `agent: { stateDir: ${t.work.dir}/agent, failoverLookSeconds: 1 }`] });
    const agent = startCoffer(['agent', '--policy', agentPolicy], t.roleEnv);
    scope.cleanups.push(async () => {
      agent.child.kill('SIGKILL');
      await agent.done.catch(() => undefined);
    });
    let seen: { listen?: string; failover?: { epoch?: number; primary?: string } } = {};
    await until(async () => {
      const r = await coffer(['status', '--json', '--policy', agentPolicy], t.roleEnv);
      if (r.status === 0) seen = JSON.parse(r.stdout) as typeof seen;
      return seen.failover?.epoch === 2 && seen.listen !== undefined;
    }, "the agent's look at failover", 60_000, 250);
    expect(seen.failover).toMatchObject({ epoch: 2, primary: promoted });
    const metrics = await (await fetch(`http://${seen.listen}/metrics`)).text();
    const gauge = (name: string, node?: string) => Number(new RegExp(`^${name}\\{cluster="main"${node ? `,node="${node}"` : ''}\\} (\\S+)$`, 'm').exec(metrics)?.[1]);
    expect(gauge('coffer_failover_epoch')).toBe(2);
    expect(gauge('coffer_failover_primary_named', promoted)).toBe(1);
    expect(gauge('coffer_failover_node_up', 'db1')).toBe(0);
    expect(gauge('coffer_failover_node_primary', promoted)).toBe(1);
    expect(gauge('coffer_failover_standby_streaming', other)).toBe(1);
    expect(gauge('coffer_failover_standby_replay_lag_bytes', other)).toBeLessThan(1 << 20);
    // Failsafe: every observer's endpoint answers, and none is promising (the primary reaches the store).
    for (const o of ['region-a', 'region-b', 'witness']) {
      const observerGauge = (name: string) => Number(new RegExp(`^${name}\\{cluster="main",observer="${o}"\\} (\\S+)$`, 'm').exec(metrics)?.[1]);
      expect(observerGauge('coffer_failover_observer_answering')).toBe(1);
      expect(observerGauge('coffer_failover_observer_promise_seconds')).toBe(0);
    }
    // The first base backup of the new timeline, taken by the new primary's guard once it was promoted.
    const promotedLog = () => t.logs.find((l) => l.startsWith(`--- guard --node ${promoted}\n`))!;
    await until(() => /"kind":"after-promotion".*base backup of main on epoch 2's timeline taken/.test(promotedLog()), 'the base backup after promotion', 60_000, 200).catch((e: Error) => {
      throw new Error(`${e.message}\n${promotedLog()}`);
    });
    const listed = await coffer(['--repo', t.repo, 'list', '--json'], { COFFER_PASSPHRASE: 'failover passphrase' });
    expect(listed.status, listed.stderr).toBe(0);
    const backups = JSON.parse(listed.stdout) as { postgres?: { timeline: number } }[];
    expect(backups.map((b) => b.postgres?.timeline)).toEqual([1, 2]);
  }, 240_000);
});
