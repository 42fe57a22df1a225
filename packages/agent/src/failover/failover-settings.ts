/**
 * The policy's `failover` section as the failover library takes it: node
 * passwords read from where the policy says (environment or secret file),
 * seconds turned into milliseconds, defaults filled in. The decision store's
 * location and access are returned for the caller to open.
 */
import { InvalidArgumentError } from '@coffer/engine';
import type { Policy } from '../policy/schema.js';
import { readSecret } from '../jobs/job-steps.js';

export interface FailoverNodeSettings {
  name: string;
  conninfo: string;
  password?: string;
}

export interface FailoverSettings {
  cluster: string;
  decision: { location: string; region?: string; endpoint?: string; credentials?: { accessKeyId: string; secretAccessKey: string; sessionToken?: string } };
  nodes: FailoverNodeSettings[];
  observers: string[];
  intervalMs: number;
  probeTimeoutMs: number;
  misses: number;
  windowMs: number;
  ttlMs: number;
  marginMs: number;
  maxLagBytes: number;
}

export function failoverSettings(policy: Policy, env: NodeJS.ProcessEnv): FailoverSettings {
  const f = policy.failover;
  if (!f) throw new InvalidArgumentError('failover', 'the policy has no failover section (cluster, decision, nodes, observers)');
  const c = f.decision.credentials;
  const ttlMs = (f.lease?.ttlSeconds ?? 10) * 1000;
  return {
    cluster: f.cluster,
    decision: {
      location: f.decision.location,
      ...(f.decision.region ? { region: f.decision.region } : {}),
      ...(f.decision.endpoint ? { endpoint: f.decision.endpoint } : {}),
      ...(c
        ? {
            credentials: {
              accessKeyId: readSecret(c.accessKeyId, 'failover.decision.credentials.accessKeyId', env),
              secretAccessKey: readSecret(c.secretAccessKey, 'failover.decision.credentials.secretAccessKey', env),
              ...(c.sessionToken ? { sessionToken: readSecret(c.sessionToken, 'failover.decision.credentials.sessionToken', env) } : {}),
            },
          }
        : {}),
    },
    nodes: f.nodes.map((n) => ({ name: n.name, conninfo: n.connection, ...(n.password ? { password: readSecret(n.password, `failover.nodes.${n.name}.password`, env) } : {}) })),
    observers: [...f.observers],
    intervalMs: (f.probe?.intervalSeconds ?? 1) * 1000,
    probeTimeoutMs: (f.probe?.timeoutSeconds ?? 2) * 1000,
    misses: f.probe?.misses ?? 3,
    windowMs: (f.probe?.windowSeconds ?? 30) * 1000,
    ttlMs,
    marginMs: f.lease?.marginSeconds !== undefined ? f.lease.marginSeconds * 1000 : Math.max(1000, ttlMs / 2),
    maxLagBytes: (f.maxLagMiB ?? 16) * 1024 * 1024,
  };
}
