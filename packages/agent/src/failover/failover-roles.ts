/**
 * The failover roles a host runs, built from the policy's failover section:
 * an observer (with its failsafe promise server when failover.failsafe is
 * set) and a database host's guard (with its watchdog, its cutovers, the
 * backup after a promotion and the repository's replay target). Also what
 * an operator asks of the section: the decision log and every node as it
 * answers now, and rejoining a stopped old primary. `coffer failover …` and
 * a service embedding Coffer build them the same way; the decision log is
 * opened by the caller (its store is the caller's to reach).
 */
import { join } from 'node:path';
import { InvalidArgumentError, postmasterPid, processAlive } from '@coffer/engine';
import {
  CommandCutover,
  DnsCutover,
  FailsafePromises,
  FailsafeServer,
  Guard,
  HttpFailsafeQuorum,
  Observer,
  WebhookCutover,
  failoverStatus,
  monotonicMs,
  nodeStates,
  rejoin,
  rejoinCommand,
  Watchdog,
  type DecisionBackend,
  type FailoverStatus,
  type FailsafeState,
  type NodeState,
} from '@coffer/failover';
import type { Policy } from '../policy/schema.js';
import { backupAfterPromotion } from './backup-after-promotion.js';
import { replayTargetFromRepository } from './replay-target.js';
import type { FailoverNodeSettings, FailoverSettings } from './failover-settings.js';

/** The observers' failsafe promises as a guard or `failoverOverview` asks for them, when the policy has failsafe. */
function failsafeQuorum(settings: FailoverSettings, timeoutMs: number): HttpFailsafeQuorum | undefined {
  const fs = settings.failsafe;
  return fs ? new HttpFailsafeQuorum({ cluster: settings.cluster, endpoints: fs.endpoints, timeoutMs, ...(fs.token !== undefined ? { token: fs.token } : {}) }) : undefined;
}

/** One thing a role did or saw, for its log. */
export interface RoleEvent {
  kind: string;
  epoch: number;
  detail: string;
}

/** The policy's failover node called `name`; `option` is named when there is none. */
export function failoverNode(settings: FailoverSettings, name: string, option: string): FailoverNodeSettings {
  const node = settings.nodes.find((n) => n.name === name);
  if (!node) throw new InvalidArgumentError(option, `${JSON.stringify(name)} is not one of the policy's failover nodes (${settings.nodes.map((n) => n.name).join(', ')})`);
  return node;
}

/** An observer: it probes the primary, votes, and names the next primary once a majority voted it down. */
export class ObserverRole {
  private constructor(
    private readonly observer: Observer,
    private readonly server: FailsafeServer | undefined,
  ) {}

  /** Observer `name` of the policy, its failsafe promise server (when the policy has failsafe) listening; `start` starts it watching. */
  static async open(settings: FailoverSettings, decisions: DecisionBackend, name: string, onEvent: (e: RoleEvent) => void): Promise<ObserverRole> {
    if (!settings.observers.includes(name)) throw new InvalidArgumentError('--observer', `${JSON.stringify(name)} is not one of the policy's failover observers (${settings.observers.join(', ')})`);
    const fs = settings.failsafe;
    const promises = fs ? await FailsafePromises.open({ ttlMs: settings.ttlMs, marginMs: settings.marginMs, clock: monotonicMs, stateFile: join(fs.stateDir, `${settings.cluster}-${name}.json`) }) : undefined;
    const observer = new Observer({
      decisions,
      name,
      observers: settings.observers,
      nodes: settings.nodes,
      intervalMs: settings.intervalMs,
      probeTimeoutMs: settings.probeTimeoutMs,
      misses: settings.misses,
      windowMs: settings.windowMs,
      maxLagBytes: settings.maxLagBytes,
      ...(promises ? { failsafe: promises } : {}),
      onEvent,
    });
    const server =
      fs && promises
        ? await FailsafeServer.start({
            promises,
            cluster: settings.cluster,
            view: () => observer.view(),
            listen: fs.endpoints[name]!,
            ...(fs.token !== undefined ? { token: fs.token } : {}),
            onEvent: (kind, epoch, detail) => onEvent({ kind: `failsafe-${kind}`, epoch, detail }),
          }).catch((e: Error) => {
            throw new InvalidArgumentError('failover.failsafe.endpoints', `${name}: cannot listen on ${fs.endpoints[name]}: ${e.message}`);
          })
        : undefined;
    return new ObserverRole(observer, server);
  }

  start(): void {
    this.observer.start();
  }

  /** Where its failsafe promises are served, when they are. */
  get failsafeAddress(): string | undefined {
    return this.server?.address;
  }

  async stop(): Promise<void> {
    await this.observer.stop();
    await this.server?.stop();
  }
}

export interface GuardRoleOptions {
  /** This host's node (a name under failover.nodes). */
  node: string;
  /** The server's data directory. */
  pgdata: string;
  /** How the guard reaches its server (default: the node's connection in the policy). */
  localDb?: string;
  /** The `coffer` executable the backup after a promotion and the replay target run. */
  cofferBin: string;
  env: NodeJS.ProcessEnv;
  onEvent: (e: RoleEvent) => void;
}

/** A database host's guard beside its watchdog: it holds the primary's lease, fences, promotes and moves traffic. */
export class GuardRole {
  private constructor(
    private readonly guard: Guard,
    private readonly watchdog: Watchdog,
    /** The observers it asks for failsafe promises when the store is out of reach, if any. */
    readonly failsafeObservers: readonly string[] | undefined,
  ) {}

  /** The guard of node `o.node`, its watchdog process running; `start` starts it guarding. */
  static async open(policy: Policy, settings: FailoverSettings, decisions: DecisionBackend, o: GuardRoleOptions): Promise<GuardRole> {
    const node = failoverNode(settings, o.node, '--node');
    const fs = settings.failsafe;
    const failsafe = failsafeQuorum(settings, settings.ttlMs / 3);
    const afterPromotion = backupAfterPromotion(policy, { node: o.node, pgdata: o.pgdata, ...(o.localDb ? { connection: o.localDb } : {}), cofferBin: o.cofferBin, env: o.env });
    const replayTarget = replayTargetFromRepository(policy, { cofferBin: o.cofferBin, env: o.env });
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
      onEvent: o.onEvent,
    });
    return new GuardRole(guard, watchdog, fs ? Object.keys(fs.endpoints) : undefined);
  }

  start(): void {
    this.guard.start();
  }

  get watchdogPid(): number {
    return this.watchdog.pid;
  }

  /**
   * Stops the guard. A primary's lease stays armed in the watchdog — stopping
   * the guard must not leave a primary that nothing fences — so the watchdog
   * stops too only when this node holds no epoch; the epoch still held is
   * returned.
   */
  async stop(): Promise<number | undefined> {
    await this.guard.stop();
    if (this.guard.holding === undefined) await this.watchdog.stop();
    return this.guard.holding;
  }
}

/** The decision log, every node as it answers now, and each failsafe observer's promises (with failover.failsafe). */
export interface FailoverOverview {
  status: FailoverStatus;
  nodes: NodeState[];
  failsafe?: Record<string, FailsafeState | { error: string }>;
}

export async function failoverOverview(settings: FailoverSettings, decisions: DecisionBackend): Promise<FailoverOverview> {
  const [status, nodes, failsafe] = await Promise.all([
    failoverStatus(decisions, settings.observers),
    nodeStates(settings.nodes.map((n) => ({ name: n.name, conninfo: n.conninfo, ...(n.password !== undefined ? { password: n.password } : {}), timeoutMs: settings.probeTimeoutMs }))),
    failsafeQuorum(settings, settings.probeTimeoutMs)?.states(),
  ]);
  return { status, nodes, ...(failsafe ? { failsafe } : {}) };
}

export interface PolicyRejoinOptions {
  /** This host's node (a name under failover.nodes). */
  node: string;
  /** The old primary's data directory, its server stopped. */
  pgdata: string;
  /** PostgreSQL's server binaries, for pg_rewind. */
  pgBin: string;
}

/**
 * Makes a stopped old primary a standby of the primary the decision log
 * names (pg_rewind, then primary_conninfo and standby.signal). Refused while
 * its server runs, and for the primary itself.
 */
export async function rejoinFromPolicy(settings: FailoverSettings, decisions: DecisionBackend, o: PolicyRejoinOptions): Promise<{ primary: string; rewound: boolean; output: string }> {
  failoverNode(settings, o.node, '--node');
  const pid = postmasterPid(o.pgdata);
  if (pid !== undefined && processAlive(pid)) throw new InvalidArgumentError('--pgdata', `a server runs in ${o.pgdata}: rejoin takes a stopped one (its guard stops it when another node is named)`);
  const leader = await decisions.current();
  const primary = leader && settings.nodes.find((n) => n.name === leader.node);
  if (!primary) throw new InvalidArgumentError('rejoin', `${decisions.location} names no primary among the policy's nodes`);
  if (primary.name === o.node) throw new InvalidArgumentError('--node', `${o.node} is the primary ${decisions.location} names: it rejoins nothing`);
  const r = await rejoin({ dataDir: o.pgdata, pgBin: o.pgBin, source: primary.conninfo, replication: primary.replication, node: o.node, ...(primary.password !== undefined ? { password: primary.password } : {}) });
  return { primary: primary.name, rewound: r.rewound, output: r.output };
}
