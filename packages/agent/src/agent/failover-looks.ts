/**
 * The agent's look at failover, when the policy has a `failover` section:
 * `coffer failover status --json` as a child every `failoverLookSeconds`
 * (default 15) — the decision log (epoch, primary, votes, lease) and each
 * node as it answers (role, timeline, streaming, a standby's lag) — kept for
 * `coffer status` and served as `coffer_failover_*` gauges. The agent holds
 * no failover role by this: observers and guards are processes of their own.
 */
import { cofferJson } from '../jobs/coffer-json.js';
import type { AgentMetrics } from '../metrics/agent-metrics.js';
import type { Logger } from './log.js';

export interface FailoverNodeLook {
  node: string;
  ok: boolean;
  error?: string;
  role?: 'primary' | 'standby';
  timeline?: number;
  streaming?: boolean;
  receiveLagBytes?: number;
  replayLagBytes?: number;
}

/** One observer's failsafe endpoint as the look found it. */
export interface FailsafeObserverLook {
  observer: string;
  ok: boolean;
  error?: string;
  /** How long its longest live promise lasts, in seconds (0: none): the primary runs on promises. */
  promiseSeconds?: number;
}

export interface FailoverLook {
  checkedAt: string;
  ok: boolean;
  error?: string;
  epoch?: number;
  /** The node the decision log names primary. */
  primary?: string;
  votesDown?: number;
  votesNeeded?: number;
  lease?: string;
  nodes: FailoverNodeLook[];
  /** With failover.failsafe: each observer's endpoint. */
  failsafe?: FailsafeObserverLook[];
}

export interface FailoverLooksOptions {
  policyFile: string;
  cofferBin: string;
  env: NodeJS.ProcessEnv;
  metrics: AgentMetrics;
  log: Logger;
}

interface StatusJson {
  leader?: { epoch: number; node: string };
  down: string[];
  needed: number;
  lease: string;
  nodes: FailoverNodeLook[];
  failsafe?: Record<string, { error: string } | { promises: { epoch: number; remainingMs: number }[] }>;
}

export class FailoverLooks {
  private lastLook: FailoverLook | undefined;

  constructor(private readonly o: FailoverLooksOptions) {}

  last(): FailoverLook | undefined {
    return this.lastLook;
  }

  async look(): Promise<FailoverLook> {
    const checkedAt = new Date().toISOString();
    let look: FailoverLook;
    try {
      const s = (await cofferJson('coffer failover status', this.o.cofferBin, ['failover', 'status', '--json', '--policy', this.o.policyFile], this.o.env)) as StatusJson;
      look = {
        checkedAt,
        ok: true,
        ...(s.leader ? { epoch: s.leader.epoch, primary: s.leader.node } : {}),
        votesDown: s.down.length,
        votesNeeded: s.needed,
        lease: s.lease,
        nodes: s.nodes.map((n) => ({ node: n.node, ok: n.ok, ...(n.error ? { error: n.error } : {}), ...pick(n) })),
        ...(s.failsafe
          ? {
              failsafe: Object.entries(s.failsafe).map(([observer, st]) =>
                'error' in st ? { observer, ok: false, error: st.error } : { observer, ok: true, promiseSeconds: Math.max(0, ...st.promises.map((p) => p.remainingMs / 1000)) },
              ),
            }
          : {}),
      };
    } catch (e) {
      look = { checkedAt, ok: false, error: (e as Error).message, nodes: [] };
      this.o.log.warn({ error: look.error }, 'looking at failover failed');
    }
    this.lastLook = look;
    this.o.metrics.recordFailover(look);
    return look;
  }
}

function pick(n: FailoverNodeLook): Partial<FailoverNodeLook> {
  return {
    ...(n.role ? { role: n.role } : {}),
    ...(n.timeline !== undefined ? { timeline: n.timeline } : {}),
    ...(n.streaming !== undefined ? { streaming: n.streaming } : {}),
    ...(n.receiveLagBytes !== undefined ? { receiveLagBytes: n.receiveLagBytes } : {}),
    ...(n.replayLagBytes !== undefined ? { replayLagBytes: n.replayLagBytes } : {}),
  };
}
