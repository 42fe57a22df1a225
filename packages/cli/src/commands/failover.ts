/**
 * `coffer failover …`: the failover roles over the policy's `failover`
 * section — `init` names the first primary, `watch` runs an observer, `guard`
 * runs a database host's guard (with its watchdog), `status` shows the
 * decision log. `watch` and `guard` run until SIGTERM.
 */
import { InvalidArgumentError } from '@coffer/engine';
import type { FailoverSettings, Policy } from '@coffer/agent';
import type { DecisionBackend } from '@coffer/failover';
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
      const { failoverNode } = await import('@coffer/agent');
      failoverNode(settings, o.primary, '--primary');
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
      const { failoverOverview } = await import('@coffer/agent');
      const { status, nodes, failsafe } = await failoverOverview(settings, decisions);
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
      const { rejoinFromPolicy } = await import('@coffer/agent');
      const r = await rejoinFromPolicy(settings, decisions, { node: o.node, pgdata: o.pgdata, pgBin: o.pgBin });
      for (const l of r.output.trim().split('\n')) if (l.trim()) say(`pg_rewind: ${l.trim()}`);
      say(`${o.pgdata}: ${r.rewound ? 'rewound to' : 'already on'} ${r.primary}'s history; a standby of ${r.primary} once started`);
    });

  failover
    .command('watch')
    .description('run an observer until SIGTERM: probe the primary, vote it down after the policy\'s misses (up again when it answers), and name the most advanced healthy standby once a majority voted down')
    .option(...POLICY_OPTION)
    .requiredOption('--observer <name>', 'this observer (a name under failover.observers)')
    .option('--json', 'print events as JSON lines')
    .action(async (o: { policy?: string; observer: string; json?: boolean }) => {
      const { settings, decisions } = await setup(o, io.env);
      const { ObserverRole } = await import('@coffer/agent');
      const role = await ObserverRole.open(settings, decisions, o.observer, (e) => line(o.json, e));
      say(`observer ${o.observer} watching ${decisions.location}${role.failsafeAddress ? `; failsafe promises on ${role.failsafeAddress}` : ''}`);
      role.start();
      await untilSignalled();
      await role.stop();
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
      const { GuardRole } = await import('@coffer/agent');
      const role = await GuardRole.open(policy, settings, decisions, { node: o.node, pgdata: o.pgdata, ...(o.localDb ? { localDb: o.localDb } : {}), cofferBin: COFFER_BIN, env: io.env, onEvent: (e) => line(o.json, e) });
      say(`guard of ${o.node} (${o.pgdata}) watching ${decisions.location}; watchdog pid ${role.watchdogPid}; ${role.failsafeObservers ? `failsafe: asks ${role.failsafeObservers.join(', ')} when the store is out of reach` : 'failsafe off (no failover.failsafe): cut off from the decision store, a primary fences itself when its lease runs out'}`);
      role.start();
      await untilSignalled();
      const held = await role.stop();
      if (held !== undefined) say(`still primary in epoch ${held}: the watchdog (pid ${role.watchdogPid}) fences the server when the lease runs out unless a guard takes over`);
    });
}
