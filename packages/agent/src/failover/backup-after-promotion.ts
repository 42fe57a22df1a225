/**
 * The first base backup on a new primary's timeline, taken by its guard as
 * soon as it is promoted and traffic moved (the policy's
 * `failover.backupAfterPromotion`), rather than at the next scheduled run:
 * until then, recovering the new timeline means replaying all of its WAL
 * from a backup of the old one. The cluster's backup job as the policy
 * defines it, run on this host: its data directory and connection are the
 * guard's.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { InvalidArgumentError } from '@coffer/engine';
import type { Policy } from '../policy/schema.js';
import { runJob } from '../jobs/run-job.js';

export interface BackupAfterPromotionOptions {
  /** This host's node under failover.nodes. */
  node: string;
  /** The server's data directory on this host. */
  pgdata: string;
  /** How this host reaches its server (default: the node's connection). */
  connection?: string;
  /** The `coffer` entry point. */
  cofferBin: string;
  env: NodeJS.ProcessEnv;
}

/** The work for the guard's `afterPromotion`, or undefined when the policy asks for none. */
export function backupAfterPromotion(policy: Policy, options: BackupAfterPromotionOptions): ((epoch: number, signal: AbortSignal) => Promise<string>) | undefined {
  const name = policy.failover?.backupAfterPromotion;
  if (name === undefined) return undefined;
  const cluster = policy.clusters[name];
  if (!cluster) throw new InvalidArgumentError('failover.backupAfterPromotion', `no cluster named ${JSON.stringify(name)} under clusters`);
  const node = policy.failover!.nodes.find((n) => n.name === options.node);
  if (!node) throw new InvalidArgumentError('--node', `${JSON.stringify(options.node)} is not one of the policy's failover nodes`);
  // This host's server, now the primary: never a standby's (the cluster's `standby` was another host's).
  const { standby: _standby, ...rest } = cluster;
  const here: Policy = {
    ...policy,
    clusters: { ...policy.clusters, [name]: { ...rest, pgdata: options.pgdata, connection: options.connection ?? node.connection, ...(node.password ? { password: node.password } : {}) } },
  };
  return async (epoch, signal) => {
    const workDir = await mkdtemp(join(tmpdir(), 'coffer-promoted-'));
    try {
      const outcome = await runJob(here, { job: 'backup', cluster: name }, { cofferBin: options.cofferBin, env: options.env, workDir, attempts: 3, retryDelayMs: (policy.agent?.retryDelaySeconds ?? 60) * 1000, signal });
      const step = outcome.steps.at(-1);
      if (!outcome.ok || !step) throw new Error(`the base backup of ${name} failed${step ? ` (exit ${step.exitStatus}${step.error ? `: ${step.error}` : ''})` : ''} after ${outcome.tries} tries; the schedule's next run takes one`);
      const mb = step.figures.backup_bytes !== undefined ? `, ${(step.figures.backup_bytes / 1e6).toFixed(1)} MB read` : '';
      return `base backup of ${name} on epoch ${epoch}'s timeline taken in ${step.seconds.toFixed(1)} s${mb}`;
    } finally {
      await rm(workDir, { recursive: true, force: true });
    }
  };
}
