/**
 * The policy's drills (its `drills` section) as the verify library runs
 * them: the weekly failover drill (a switchover and back through the
 * failover section's decision log) and the quarterly evacuation drill
 * (region A taken away by the environment's hook, region B taking over from
 * its own repository). Each runs only where the policy enables it, because
 * each moves production's primary. Targets come from the caller (a command
 * line), else the policy, else the seeds' defaults.
 */
import { Resolver } from 'node:dns/promises';
import { InvalidArgumentError, type Repository, type RestoreCommandScope } from '@coffer/engine';
import { pointName, runHook, switchover, type DecisionBackend } from '@coffer/failover';
import { DEFAULT_DRILL_TARGETS, evacuateDrill, failoverDrill, postgresAt, type DrillTargets, type EvacuatePath, type RecoveryDrillReport } from '@coffer/verify';
import type { Policy } from '../policy/schema.js';
import { readSecret } from '../jobs/job-steps.js';
import { dnsUpdateSettings, failoverSettings, type FailoverSettings } from '../failover/failover-settings.js';

/** What a caller may set over the policy's drill settings. */
export interface PolicyDrillOverrides {
  /** The policy file's path, named in refusals. */
  file: string;
  rpoTargetSeconds?: number;
  rtoTargetSeconds?: number;
  onProgress?: (line: string) => void;
}

export interface PolicyFailoverDrillOptions extends PolicyDrillOverrides {
  /** Opens the failover section's decision log (its store is the caller's to reach); called once the drill is allowed. */
  decisions: (settings: FailoverSettings) => Promise<DecisionBackend>;
  /** Where secrets the policy names are read from. */
  env: NodeJS.ProcessEnv;
  /** The standby to switch to (default: drills.failover.to, else the streaming standby least behind). */
  to?: string;
}

export interface PolicyEvacuateDrillOptions extends PolicyDrillOverrides {
  /** Opens region B's repository with region B's keys; called once the drill is allowed. */
  repo: () => Promise<Repository>;
  /** The stanza to restore (default: the cluster's stanza, else its name). */
  stanza?: string;
  /** Promote region B's standby or restore from `repo` (default: promote when drills.evacuate.standby is set). */
  via?: 'promote' | 'restore';
  /** Leave region B serving and the name on it. */
  keep?: boolean;
  /** restore_command of a restored region B server (reaching `repo` with region B's keys). */
  restoreCommand: (scope: RestoreCommandScope, repo: Repository) => string;
  /** Where secrets the policy names are read from, and the restored server's environment. */
  env: NodeJS.ProcessEnv;
}

/** A policy drill's RPO and RTO targets: the caller's, else the policy's, else the seeds'. */
export function drillTargets(policy: Policy, o: Pick<PolicyDrillOverrides, 'rpoTargetSeconds' | 'rtoTargetSeconds'> = {}): DrillTargets {
  const d = policy.drills;
  return {
    rpoSeconds: o.rpoTargetSeconds ?? d?.rpoTargetSeconds ?? DEFAULT_DRILL_TARGETS.rpoSeconds,
    rtoSeconds: o.rtoTargetSeconds ?? d?.rtoTargetSeconds ?? DEFAULT_DRILL_TARGETS.rtoSeconds,
  };
}

/** Where a policy drill's reports go: `reports`, else the policy's drills.reports, else `drills` in the working directory. */
export function drillReportsDir(policy: Policy, reports?: string): string {
  return reports ?? policy.drills?.reports ?? 'drills';
}

/**
 * The weekly failover drill: a planned switchover to a standby and back under
 * a probe writer. Refused unless drills.failover.enabled, and when a node
 * has no rejoin command (the drill would leave it stopped).
 */
export async function policyFailoverDrill(policy: Policy, o: PolicyFailoverDrillOptions): Promise<RecoveryDrillReport> {
  const d = policy.drills?.failover;
  if (d?.enabled !== true) throw new InvalidArgumentError('drills.failover.enabled', `${o.file} does not enable the failover drill: it moves the primary twice, so it runs only where the policy says so (drills.failover.enabled: true)`);
  const settings = failoverSettings(policy, o.env);
  const norejoin = settings.nodes.filter((n) => !n.rejoin).map((n) => n.name);
  if (norejoin.length > 0) throw new InvalidArgumentError('failover.nodes[].rejoin', `${norejoin.join(', ')} cannot rejoin after a switchover (no rejoin command): the drill would leave it stopped`);
  const decisions = await o.decisions(settings);
  const dns = settings.cutover.dns;
  const to = o.to ?? d.to;
  return failoverDrill({
    cluster: settings.cluster,
    nodes: settings.nodes.map((n) => ({ name: n.name, conninfo: n.conninfo, ...(n.password !== undefined ? { password: n.password } : {}), ...(n.address ? { address: n.address } : {}) })),
    primary: async () => {
      const leader = await decisions.current();
      if (!leader) throw new InvalidArgumentError('failover', `${decisions.location} names no primary (coffer failover init)`);
      return leader.node;
    },
    switchover: async (node) => void (await switchover(decisions, settings.nodes, node, 'drill failover')),
    ...(dns ? { resolve: () => resolveAt(dns.server, dns.port, dns.name) } : {}),
    ...(to ? { to } : {}),
    ...(d.stepTimeoutSeconds !== undefined ? { stepTimeoutMs: d.stepTimeoutSeconds * 1000 } : {}),
    targets: drillTargets(policy, o),
    ...(o.onProgress ? { onProgress: o.onProgress } : {}),
  });
}

/**
 * The quarterly evacuation drill: region A made unavailable by
 * drills.evacuate.loseRegion, region B takes over (its standby promoted, or
 * the newest backup in `repo` restored and recovered), the name moved, a
 * write accepted; then everything put back unless `keep`. Refused unless
 * drills.evacuate.enabled, and when the chosen path lacks its settings.
 */
export async function policyEvacuateDrill(policy: Policy, o: PolicyEvacuateDrillOptions): Promise<RecoveryDrillReport> {
  const e = policy.drills?.evacuate;
  if (e?.enabled !== true) throw new InvalidArgumentError('drills.evacuate.enabled', `${o.file} does not enable the evacuation drill: it takes region A away, so it runs only where the policy says so (drills.evacuate.enabled: true)`);
  const env = o.env;
  const cluster = policy.clusters[e.cluster]!;
  const via = o.via ?? (e.standby ? 'promote' : 'restore');
  if (via === 'promote' && !e.standby) throw new InvalidArgumentError('--via', "promote needs drills.evacuate.standby (region B's standby)");
  if (via === 'restore' && !e.restore) throw new InvalidArgumentError('--via', 'restore needs drills.evacuate.restore (dataDir, listen, port)');
  const install = e.restore?.pgBin ? postgresAt(e.restore.pgBin) : undefined;
  if (e.restore?.pgBin && !install) throw new InvalidArgumentError('drills.evacuate.restore.pgBin', `${e.restore.pgBin} holds no PostgreSQL server binaries`);
  const dns = e.dns ? dnsUpdateSettings(e.dns, 'drills.evacuate.dns', env) : undefined;
  const addresses = e.addresses;
  const repo = await o.repo();
  const path: EvacuatePath =
    via === 'promote'
      ? {
          kind: 'promote',
          standby: { name: 'region-b-standby', conninfo: e.standby!.connection, ...(e.standby!.password ? { password: readSecret(e.standby!.password, 'drills.evacuate.standby.password', env) } : {}) },
          ...(e.standby!.rebuild ? { rebuild: () => hook(e.standby!.rebuild!, 'drills.evacuate.standby.rebuild') } : {}),
        }
      : {
          kind: 'restore',
          dataDir: e.restore!.dataDir,
          listen: e.restore!.listen,
          port: e.restore!.port,
          ...(install ? { install } : {}),
          restoreCommand: (scope) => o.restoreCommand(scope, repo),
          serverEnv: Object.fromEntries(Object.entries(env).filter((x): x is [string, string] => x[1] !== undefined)),
        };
  return evacuateDrill({
    cluster: e.cluster,
    stanza: o.stanza ?? cluster.stanza ?? e.cluster,
    repo,
    primary: { name: e.cluster, conninfo: cluster.connection, ...(cluster.password ? { password: readSecret(cluster.password, `clusters.${e.cluster}.password`, env) } : {}) },
    loseRegion: () => hook(e.loseRegion, 'drills.evacuate.loseRegion'),
    ...(e.restoreRegion ? { restoreRegion: () => hook(e.restoreRegion!, 'drills.evacuate.restoreRegion') } : {}),
    via: path,
    ...(dns && addresses ? { cutover: (to: 'a' | 'b') => pointName(dns, addresses[to]), resolve: () => resolveAt(dns.server, dns.port, dns.name), addressB: addresses.b } : {}),
    ...(o.keep ? { keep: true } : {}),
    ...(e.stepTimeoutSeconds !== undefined ? { stepTimeoutMs: e.stepTimeoutSeconds * 1000 } : {}),
    targets: drillTargets(policy, o),
    ...(o.onProgress ? { onProgress: o.onProgress } : {}),
  });
}

/** Runs a drill environment's command (argv, no shell); it must exit 0 within 10 minutes. */
async function hook(argv: readonly string[], what: string): Promise<void> {
  await runHook(argv, {}, 600_000, (detail) => new InvalidArgumentError(what, detail));
}

/** The A records `name` has at the DNS server the cutover updates (asked there, not through the system's resolver and its cache). */
async function resolveAt(server: string, port: number, name: string): Promise<string[]> {
  const resolver = new Resolver({ timeout: 2000, tries: 2 });
  resolver.setServers([server.includes(':') ? `[${server}]:${port}` : `${server}:${port}`]);
  return resolver.resolve4(name).catch(() => []);
}
