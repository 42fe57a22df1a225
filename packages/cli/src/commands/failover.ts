/**
 * `coffer failover …`: the failover roles over the policy's `failover`
 * section — `init` names the first primary, `watch` runs an observer, `guard`
 * runs a database host's guard (with its watchdog), `status` shows the
 * decision log. `watch` and `guard` run until SIGTERM.
 */
import { InvalidArgumentError, postmasterPid, processAlive } from '@coffer/engine';
import type { FailoverSettings, Policy } from '@coffer/agent';
import type { DecisionBackend } from '@coffer/failover';
import { join } from 'node:path';
import { storeAt } from '../repo-options.js';
import { COFFER_BIN, intOption, type CliContext } from '../context.js';
import { policyPath, POLICY_OPTION } from './policy.js';

async function setup(o: { policy?: string }, env: NodeJS.ProcessEnv): Promise<{ settings: FailoverSettings; decisions: DecisionBackend; policy: Policy }> {
  const { loadPolicy, failoverSettings } = await import('@coffer/agent');
  const policy = await loadPolicy(policyPath(o, env));
  const settings = failoverSettings(policy, env);
  return { settings, decisions: await openDecisions(settings, env), policy };
}

/** The decision log the policy's failover section names. */
export async function openDecisions(settings: FailoverSettings, env: NodeJS.ProcessEnv): Promise<DecisionBackend> {
  const { ObjectStoreDecisions } = await import('@coffer/failover');
  const d = settings.decision;
  const store = await storeAt(d.location, { ...(d.endpoint ? { s3Endpoint: d.endpoint } : {}), ...(d.credentials ? { s3Credentials: d.credentials } : {}) }, d.region ? { ...env, AWS_REGION: d.region, AWS_DEFAULT_REGION: d.region } : env);
  return new ObjectStoreDecisions(store, settings.cluster);
}

/** Resolves when SIGTERM or SIGINT arrives. */
function untilSignalled(): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    const on = (s: NodeJS.Signals) => () => {
      process.removeAllListeners('SIGTERM');
      process.removeAllListeners('SIGINT');
      resolve(s);
    };
    process.once('SIGTERM', on('SIGTERM'));
    process.once('SIGINT', on('SIGINT'));
  });
}

export function register(ctx: CliContext): void {
  const { program, io, say } = ctx;
  const failover = program.command('failover').description('failover decided through the object store: observers vote, the first to name the next primary decides, each database host\'s guard fences and promotes (the policy\'s failover section)');
  const line = (json: boolean | undefined, event: { kind: string; epoch: number; detail: string }) =>
    say(json ? JSON.stringify({ time: new Date().toISOString(), ...event }) : `${new Date().toISOString()} epoch ${event.epoch} ${event.kind}: ${event.detail}`);

  failover
    .command('init')
    .description('name the first primary (epoch 1); refused when the decision log already names one')
    .option(...POLICY_OPTION)
    .requiredOption('--primary <node>', 'the node that is primary now (a name under failover.nodes)')
    .action(async (o: { policy?: string; primary: string }) => {
      const { settings, decisions } = await setup(o, io.env);
      if (!settings.nodes.some((n) => n.name === o.primary)) throw new InvalidArgumentError('--primary', `${JSON.stringify(o.primary)} is not one of the policy's failover nodes (${settings.nodes.map((n) => n.name).join(', ')})`);
      const { initFailover } = await import('@coffer/failover');
      const leader = await initFailover(decisions, settings.cluster, o.primary);
      say(`${decisions.location}: epoch ${leader.epoch}, primary ${leader.node}`);
    });

  failover
    .command('status')
    .description('the decision log: the epoch, its primary, the observers\' votes, and whether the primary holds its lease; and each node as it answers now: role, timeline, WAL position, streaming, a standby\'s lag behind the primary')
    .option(...POLICY_OPTION)
    .option('--json', 'print it as JSON')
    .action(async (o: { policy?: string; json?: boolean }) => {
      const { settings, decisions } = await setup(o, io.env);
      const { failoverStatus, nodeStates, HttpFailsafeQuorum } = await import('@coffer/failover');
      const fs = settings.failsafe;
      const [status, nodes, failsafe] = await Promise.all([
        failoverStatus(decisions, settings.observers),
        nodeStates(settings.nodes.map((n) => ({ name: n.name, conninfo: n.conninfo, ...(n.password !== undefined ? { password: n.password } : {}), timeoutMs: settings.probeTimeoutMs }))),
        fs ? new HttpFailsafeQuorum({ cluster: settings.cluster, endpoints: fs.endpoints, timeoutMs: settings.probeTimeoutMs, ...(fs.token !== undefined ? { token: fs.token } : {}) }).states() : undefined,
      ]);
      if (o.json) return say(JSON.stringify({ ...status, nodes, ...(failsafe ? { failsafe } : {}) }, null, 2));
      if (!status.leader) say(`${decisions.location}: no primary named yet (coffer failover init --primary NODE)`);
      else {
        say(`${decisions.location}: epoch ${status.leader.epoch}, primary ${status.leader.node} (${status.leader.reason}${status.leader.previous ? ` after ${status.leader.previous}` : ''}, decided by ${status.leader.decidedBy} at ${status.leader.writtenAt})`);
        say(`  lease: ${status.lease}`);
        say(`  votes down: ${status.down.length ? status.down.join(', ') : 'none'} (${status.needed} of ${settings.observers.length} make a majority)`);
      }
      const mib = (b: number | undefined) => (b === undefined ? '?' : `${(b / 1048576).toFixed(1)} MiB`);
      for (const n of nodes) {
        if (!n.ok) say(`  ${n.node}: does not answer (${n.error})`);
        else if (n.role === 'primary') say(`  ${n.node}: primary, timeline ${n.timeline ?? '?'}, at ${n.lsn ?? '?'}`);
        else say(`  ${n.node}: standby, timeline ${n.timeline ?? '?'}, ${n.streaming ? 'streaming' : 'not streaming'}, replayed ${n.lsn ?? '?'} (${mib(n.replayLagBytes)} behind), received ${n.receivedLsn ?? '?'} (${mib(n.receiveLagBytes)} behind)`);
      }
      if (!failsafe) say('  failsafe: off (no failover.failsafe): a primary cut off from the decision store fences itself when its lease runs out');
      else
        for (const [name, st] of Object.entries(failsafe)) {
          if ('error' in st) say(`  failsafe ${name}: does not answer (${st.error})`);
          else {
            const live = st.promises.map((p) => `epoch ${p.epoch} for ${Math.ceil(p.remainingMs / 1000)} s more`).join(', ');
            say(`  failsafe ${name}: knows epoch ${st.epoch}${st.node ? ` (${st.node})` : ''}; ${live ? `promised ${live}` : 'no live promise'}${st.closedThrough ? `; closed up to epoch ${st.closedThrough}` : ''}${st.promising ? '' : '; started too recently to promise'}`);
          }
        }
    });

  failover
    .command('report')
    .description('the report of a failover: when each phase ended and how long it took (detected, quorum, old primary fenced, promoted, traffic moved, first write), and the RPO in WAL bytes; its figures go to --metrics-textfile')
    .option(...POLICY_OPTION)
    .option('--epoch <n>', 'the epoch the failover began (default: the newest with a report)', intOption('--epoch', 2, 2 ** 31))
    .option('--json', 'print it as JSON')
    .action(async (o: { policy?: string; epoch?: number; json?: boolean }) => {
      const { decisions } = await setup(o, io.env);
      const { reportMarkdown, reportFigures } = await import('@coffer/failover');
      const current = await decisions.current();
      let report;
      for (let e = o.epoch ?? current?.epoch ?? 0; e >= (o.epoch ?? 2) && !report; e--) report = await decisions.report(e);
      if (!report) throw new InvalidArgumentError('--epoch', o.epoch ? `${decisions.location} holds no report of epoch ${o.epoch}` : `${decisions.location} holds no failover report yet`);
      ctx.report(reportFigures(report));
      say(o.json ? JSON.stringify(report, null, 2) : reportMarkdown(report));
    });

  failover
    .command('switchover')
    .description("planned switchover: name a streaming standby primary of the next epoch; the old primary's guard stops its server cleanly (its standbys receive everything first) and the standby's guard promotes it once it has received the shutdown checkpoint, then moves traffic; waits for the report")
    .option(...POLICY_OPTION)
    .requiredOption('--to <node>', 'the standby to promote (a name under failover.nodes)')
    .option('--wait <seconds>', 'how long to wait for the new primary to report (0: do not wait)', intOption('--wait', 0, 86_400), 120)
    .option('--json', 'print the report as JSON')
    .action(async (o: { policy?: string; to: string; wait: number; json?: boolean }) => {
      const { settings, decisions } = await setup(o, io.env);
      const { switchover, reportMarkdown, reportFigures } = await import('@coffer/failover');
      const leader = await switchover(decisions, settings.nodes, o.to);
      say(`epoch ${leader.epoch}: ${leader.node} named primary (switchover from ${leader.previous})`);
      const until = Date.now() + o.wait * 1000;
      while (Date.now() < until) {
        const report = await decisions.report(leader.epoch);
        if (report) {
          ctx.report(reportFigures(report));
          return say(o.json ? JSON.stringify(report, null, 2) : reportMarkdown(report));
        }
        await new Promise((r) => setTimeout(r, 250));
      }
      if (o.wait > 0) throw new InvalidArgumentError('--wait', `${leader.node} has not reported the switchover done within ${o.wait} s: see its guard's log and coffer failover status`);
    });

  failover
    .command('rejoin')
    .description('make a stopped old primary a standby of the current primary (pg_rewind: needs data checksums or wal_log_hints; then primary_conninfo from the primary\'s replication connection, never a password, and standby.signal); then start its server as usual; run as the server\'s user')
    .option(...POLICY_OPTION)
    .requiredOption('--node <name>', 'this host\'s node (a name under failover.nodes): the standby\'s application_name')
    .requiredOption('--pgdata <dir>', "the old primary's data directory (its server stopped)")
    .requiredOption('--pg-bin <dir>', "PostgreSQL's server binaries, for pg_rewind (e.g. /usr/lib/postgresql/17/bin)")
    .action(async (o: { policy?: string; node: string; pgdata: string; pgBin: string }) => {
      const { settings, decisions } = await setup(o, io.env);
      if (!settings.nodes.some((n) => n.name === o.node)) throw new InvalidArgumentError('--node', `${JSON.stringify(o.node)} is not one of the policy's failover nodes (${settings.nodes.map((n) => n.name).join(', ')})`);
      const { rejoin } = await import('@coffer/failover');
      const pid = postmasterPid(o.pgdata);
      if (pid !== undefined && processAlive(pid)) throw new InvalidArgumentError('--pgdata', `a server runs in ${o.pgdata}: rejoin takes a stopped one (its guard stops it when another node is named)`);
      const leader = await decisions.current();
      const node = leader && settings.nodes.find((n) => n.name === leader.node);
      if (!node) throw new InvalidArgumentError('rejoin', `${decisions.location} names no primary among the policy's nodes`);
      if (node.name === o.node) throw new InvalidArgumentError('--node', `${o.node} is the primary ${decisions.location} names: it rejoins nothing`);
      const r = await rejoin({ dataDir: o.pgdata, pgBin: o.pgBin, source: node.conninfo, replication: node.replication, node: o.node, ...(node.password !== undefined ? { password: node.password } : {}) });
      for (const l of r.output.trim().split('\n')) if (l.trim()) say(`pg_rewind: ${l.trim()}`);
      say(`${o.pgdata}: ${r.rewound ? 'rewound to' : 'already on'} ${node.name}'s history; a standby of ${node.name} once started`);
    });

  failover
    .command('watch')
    .description('run an observer until SIGTERM: probe the primary, vote it down after the policy\'s misses (up again when it answers), and name the most advanced healthy standby once a majority voted down')
    .option(...POLICY_OPTION)
    .requiredOption('--observer <name>', 'this observer (a name under failover.observers)')
    .option('--json', 'print events as JSON lines')
    .action(async (o: { policy?: string; observer: string; json?: boolean }) => {
      const { settings, decisions } = await setup(o, io.env);
      if (!settings.observers.includes(o.observer)) throw new InvalidArgumentError('--observer', `${JSON.stringify(o.observer)} is not one of the policy's failover observers (${settings.observers.join(', ')})`);
      const { Observer, FailsafePromises, FailsafeServer, monotonicMs } = await import('@coffer/failover');
      const fs = settings.failsafe;
      const promises = fs ? await FailsafePromises.open({ ttlMs: settings.ttlMs, marginMs: settings.marginMs, clock: monotonicMs, stateFile: join(fs.stateDir, `${settings.cluster}-${o.observer}.json`) }) : undefined;
      const observer = new Observer({
        decisions,
        name: o.observer,
        observers: settings.observers,
        nodes: settings.nodes,
        intervalMs: settings.intervalMs,
        probeTimeoutMs: settings.probeTimeoutMs,
        misses: settings.misses,
        windowMs: settings.windowMs,
        maxLagBytes: settings.maxLagBytes,
        ...(promises ? { failsafe: promises } : {}),
        onEvent: (e) => line(o.json, e),
      });
      const server =
        fs && promises
          ? await FailsafeServer.start({
              promises,
              cluster: settings.cluster,
              view: () => observer.view(),
              listen: fs.endpoints[o.observer]!,
              ...(fs.token !== undefined ? { token: fs.token } : {}),
              onEvent: (kind, epoch, detail) => line(o.json, { kind: `failsafe-${kind}`, epoch, detail }),
            }).catch((e: Error) => {
              throw new InvalidArgumentError('failover.failsafe.endpoints', `${o.observer}: cannot listen on ${fs.endpoints[o.observer]}: ${e.message}`);
            })
          : undefined;
      say(`observer ${o.observer} watching ${decisions.location}${server ? `; failsafe promises on ${server.address}` : ''}`);
      observer.start();
      await untilSignalled();
      await observer.stop();
      await server?.stop();
    });

  failover
    .command('guard')
    .description('run a database host\'s guard until SIGTERM, beside a watchdog process: hold the primary lease while this node is primary (the watchdog fences the server when it is not renewed in time), fence the server when another node is named or a majority votes it down, promote it when it is named')
    .option(...POLICY_OPTION)
    .requiredOption('--node <name>', 'this host\'s node (a name under failover.nodes)')
    .requiredOption('--pgdata <dir>', 'the server\'s data directory')
    .option('--local-db <conninfo>', 'how the guard reaches its server (default: the node\'s connection in the policy)')
    .option('--json', 'print events as JSON lines')
    .action(async (o: { policy?: string; node: string; pgdata: string; localDb?: string; json?: boolean }) => {
      const { settings, decisions, policy } = await setup(o, io.env);
      const node = settings.nodes.find((n) => n.name === o.node);
      if (!node) throw new InvalidArgumentError('--node', `${JSON.stringify(o.node)} is not one of the policy's failover nodes (${settings.nodes.map((n) => n.name).join(', ')})`);
      const { Guard, Watchdog, DnsCutover, CommandCutover, WebhookCutover, HttpFailsafeQuorum, rejoinCommand } = await import('@coffer/failover');
      const fs = settings.failsafe;
      const failsafe = fs ? new HttpFailsafeQuorum({ cluster: settings.cluster, endpoints: fs.endpoints, timeoutMs: settings.ttlMs / 3, ...(fs.token !== undefined ? { token: fs.token } : {}) }) : undefined;
      const { backupAfterPromotion, replayTargetFromRepository } = await import('@coffer/agent');
      const afterPromotion = backupAfterPromotion(policy, { node: o.node, pgdata: o.pgdata, ...(o.localDb ? { connection: o.localDb } : {}), cofferBin: COFFER_BIN, env: io.env });
      const replayTarget = replayTargetFromRepository(policy, { cofferBin: COFFER_BIN, env: io.env });
      const addresses = Object.fromEntries(settings.nodes.flatMap((n) => (n.address ? [[n.name, n.address]] : [])));
      const c = settings.cutover;
      const cutover = [
        ...(c.dns ? [new DnsCutover(c.dns, addresses)] : []),
        ...(c.command ? [new CommandCutover(c.command, addresses)] : []),
        ...(c.webhook ? [new WebhookCutover(c.webhook.url, addresses, c.webhook.bearer)] : []),
      ];
      const watchdog = await Watchdog.start();
      const guard = new Guard({
        decisions,
        node: o.node,
        dataDir: o.pgdata,
        conninfo: o.localDb ?? node.conninfo,
        ...(node.password !== undefined ? { password: node.password } : {}),
        observers: settings.observers,
        replication: Object.fromEntries(settings.nodes.map((n) => [n.name, n.replication])),
        ttlMs: settings.ttlMs,
        marginMs: settings.marginMs,
        tickMs: Math.min(1000, settings.ttlMs / 4),
        watchdog,
        cutover,
        ...(failsafe ? { failsafe } : {}),
        ...(afterPromotion ? { afterPromotion } : {}),
        ...(node.rejoin ? { rejoinAfterSwitchover: rejoinCommand(node.rejoin, o.node) } : {}),
        ...(replayTarget ? { replayTarget, replayWaitMs: settings.replayWaitMs } : {}),
        onEvent: (e) => line(o.json, e),
      });
      say(`guard of ${o.node} (${o.pgdata}) watching ${decisions.location}; watchdog pid ${watchdog.pid}; ${failsafe ? `failsafe: asks ${Object.keys(fs!.endpoints).join(', ')} when the store is out of reach` : 'failsafe off (no failover.failsafe): cut off from the decision store, a primary fences itself when its lease runs out'}`);
      guard.start();
      await untilSignalled();
      // A primary's lease stays armed in the watchdog: stopping the guard must not leave a primary nothing fences.
      await guard.stop();
      if (guard.holding === undefined) await watchdog.stop();
      else say(`still primary in epoch ${guard.holding}: the watchdog (pid ${watchdog.pid}) fences the server when the lease runs out unless a guard takes over`);
    });
}
