/**
 * The WAL position a standby must replay before it is promoted (the policy's
 * `failover.replayFrom`): where the cluster's WAL of the standby's timeline
 * ends in the repository, asked of `coffer wal-end` with the repository's
 * access as the policy gives it (secrets in the child's environment).
 */
import { InvalidArgumentError } from '@coffer/engine';
import type { Policy } from '../policy/schema.js';
import { walEndStep } from '../jobs/job-steps.js';
import { cofferJson } from '../jobs/coffer-json.js';

export interface ReplayTargetOptions {
  cofferBin: string;
  env: NodeJS.ProcessEnv;
}

export type ReplayTarget = (standby: { systemIdentifier: string; timeline: number; segmentBytes: number }) => Promise<string | undefined>;

/** The guard's `replayTarget`, or undefined when the policy names no repository to replay from. */
export function replayTargetFromRepository(policy: Policy, options: ReplayTargetOptions): ReplayTarget | undefined {
  const name = policy.failover?.replayFrom;
  if (name === undefined) return undefined;
  if (!policy.clusters[name]) throw new InvalidArgumentError('failover.replayFrom', `no cluster named ${JSON.stringify(name)} under clusters`);
  return async (standby) => {
    const step = walEndStep(policy, name, standby, options.env);
    return cofferJson('coffer wal-end', options.cofferBin, step.args, { ...options.env, ...step.env }).then((out) => (out as { end: string | null }).end ?? undefined);
  };
}
