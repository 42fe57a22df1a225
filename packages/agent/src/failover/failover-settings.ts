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
  /** How standbys stream from it (the policy's `replication`, else its connection). */
  replication: string;
  password?: string;
  address?: string;
  /** The command its guard runs after a switchover away from it, to rejoin and start it (argv). */
  rejoin?: string[];
}

export interface CutoverSettings {
  dns?: { server: string; port: number; zone: string; name: string; ttl: number; key: { name: string; algorithm: 'hmac-sha256' | 'hmac-sha512'; secret: Buffer } };
  command?: string[];
  webhook?: { url: string; bearer?: string };
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
  /** How long a named standby may take to replay the repository's WAL before it is promoted anyway (failover.replayFrom). */
  replayWaitMs: number;
  cutover: CutoverSettings;
  /** Failsafe (the policy's failover.failsafe): each observer's host:port, where observers keep closed epochs, the token. */
  failsafe?: { endpoints: Record<string, string>; stateDir: string; token?: string };
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
    nodes: f.nodes.map((n) => ({ name: n.name, conninfo: n.connection, replication: n.replication ?? n.connection, ...(n.password ? { password: readSecret(n.password, `failover.nodes.${n.name}.password`, env) } : {}), ...(n.address ? { address: n.address } : {}), ...(n.rejoin ? { rejoin: [...n.rejoin] } : {}) })),
    observers: [...f.observers],
    intervalMs: (f.probe?.intervalSeconds ?? 1) * 1000,
    probeTimeoutMs: (f.probe?.timeoutSeconds ?? 2) * 1000,
    misses: f.probe?.misses ?? 3,
    windowMs: (f.probe?.windowSeconds ?? 30) * 1000,
    ttlMs,
    marginMs: f.lease?.marginSeconds !== undefined ? f.lease.marginSeconds * 1000 : Math.max(1000, ttlMs / 2),
    maxLagBytes: (f.maxLagMiB ?? 16) * 1024 * 1024,
    replayWaitMs: (f.replayWaitSeconds ?? 60) * 1000,
    cutover: cutoverSettings(f, env),
    ...(f.failsafe
      ? {
          failsafe: {
            endpoints: { ...f.failsafe.endpoints },
            stateDir: f.failsafe.stateDir ?? '/var/lib/coffer/failsafe',
            ...(f.failsafe.token ? { token: readSecret(f.failsafe.token, 'failover.failsafe.token', env) } : {}),
          },
        }
      : {}),
  };
}

function cutoverSettings(f: NonNullable<Policy['failover']>, env: NodeJS.ProcessEnv): CutoverSettings {
  const c = f.cutover;
  if (!c) return {};
  const dns = c.dns;
  if (dns) {
    const missing = f.nodes.filter((n) => !n.address).map((n) => n.name);
    if (missing.length) throw new InvalidArgumentError('failover.nodes', `the DNS cutover needs each node's address: ${missing.join(', ')} has none`);
  }
  return {
    ...(dns ? { dns: dnsUpdateSettings(dns, 'failover.cutover.dns', env) } : {}),
    ...(c.command ? { command: [...c.command] } : {}),
    ...(c.webhook ? { webhook: { url: c.webhook.url, ...(c.webhook.bearer ? { bearer: readSecret(c.webhook.bearer, 'failover.cutover.webhook.bearer', env) } : {}) } } : {}),
  };
}

/** A DNS update target of the policy (`failover.cutover.dns`, `drills.evacuate.dns`), its TSIG secret read from where the policy says. */
export function dnsUpdateSettings(dns: NonNullable<NonNullable<NonNullable<Policy['failover']>['cutover']>['dns']>, where: string, env: NodeJS.ProcessEnv): NonNullable<CutoverSettings['dns']> {
  const secret = Buffer.from(readSecret(dns.key.secret, `${where}.key.secret`, env).trim(), 'base64');
  if (secret.length === 0) throw new InvalidArgumentError(`${where}.key.secret`, "expected the key's secret in base64, as tsig-keygen writes it");
  return { server: dns.server, port: dns.port ?? 53, zone: dns.zone, name: dns.name, ttl: dns.ttlSeconds ?? 5, key: { name: dns.key.name, algorithm: dns.key.algorithm ?? 'hmac-sha256', secret } };
}
