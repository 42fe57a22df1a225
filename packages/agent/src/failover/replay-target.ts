/**
 * The WAL position a standby must replay before it is promoted (the policy's
 * `failover.replayFrom`): where the cluster's WAL of the standby's timeline
 * ends in the repository, asked of `coffer wal-end` with the repository's
 * access as the policy gives it (secrets in the child's environment).
 */
import { execFile } from 'node:child_process';
import { InvalidArgumentError } from '@coffer/engine';
import type { Policy } from '../policy/schema.js';
import { walEndStep } from '../jobs/job-steps.js';

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
  return (standby) => {
    const step = walEndStep(policy, name, standby, options.env);
    return new Promise((resolve, reject) => {
      execFile(process.execPath, [options.cofferBin, ...step.args], { env: { ...options.env, ...step.env }, timeout: 60_000, maxBuffer: 1 << 20 }, (e, stdout, stderr) => {
        if (e) return reject(new Error(`coffer wal-end: ${String(stderr).trim().split('\n').at(-1) || e.message}`));
        try {
          const out = JSON.parse(stdout) as { end: string | null };
          resolve(out.end ?? undefined);
        } catch {
          reject(new Error('coffer wal-end printed no JSON'));
        }
      });
    });
  };
}
