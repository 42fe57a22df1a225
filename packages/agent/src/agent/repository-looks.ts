/**
 * The agent's looks at its repositories, between and after jobs: `coffer
 * info` for each repository's size, backups, leases and KMS keys, and
 * `coffer mirror --dry-run` for how far each mirror is behind (objects and
 * bytes it lacks, the age of the oldest). Each look is a child process like a
 * job, reads only, holds no lease, and never waits for a job: a look during a
 * backup is as good as one after it. Looks run one at a time (no pile-up
 * behind a slow store).
 */
import type { Policy } from '../policy/schema.js';
import { infoStep, mirrorLagSteps, type JobStep } from '../jobs/job-steps.js';
import { runStep, type StepResult } from '../jobs/run-job.js';
import type { AgentMetrics } from '../metrics/agent-metrics.js';
import type { Logger } from './log.js';

/** The last look at one repository, or at one mirror of it. */
export interface RepositoryLook {
  /** The repository's name in the policy. */
  repository: string;
  location: string;
  /** For a mirror's lag: the destination's name and location. */
  mirror?: string;
  target?: string;
  checkedAt: string;
  ok: boolean;
  exitStatus: number;
  error?: string;
  /** A mirror's lag: objects and bytes the destination lacks, and the age of the oldest (s). */
  missingObjects?: number;
  missingBytes?: number;
  lagSeconds?: number;
}

export interface RepositoryLooksOptions {
  policy: Policy;
  cofferBin: string;
  env: NodeJS.ProcessEnv;
  workDir: string;
  signal: AbortSignal;
  metrics: AgentMetrics;
  log: Logger;
}

export class RepositoryLooks {
  private readonly looks = new Map<string, RepositoryLook>();
  private chain: Promise<void> = Promise.resolve();

  constructor(private readonly o: RepositoryLooksOptions) {}

  /** Every repository of the policy. */
  all(): string[] {
    return Object.keys(this.o.policy.repositories);
  }

  /**
   * Looks at `names` (after the ones asked before have been looked at); with
   * `reclaimable`, also at what garbage collection would free (reads every
   * manifest: after expire and gc only).
   */
  look(names: readonly string[], reclaimable: boolean, log: Logger = this.o.log): Promise<void> {
    const run = this.chain.then(() => this.lookNow(names, reclaimable, log));
    this.chain = run.catch(() => undefined);
    return run;
  }

  /** Resolves when no look is under way. */
  idle(): Promise<void> {
    return this.chain;
  }

  /** The last looks, repositories first, then mirrors. */
  status(): RepositoryLook[] {
    return [...this.looks.values()].sort((a, b) => (a.mirror ? 1 : 0) - (b.mirror ? 1 : 0) || a.repository.localeCompare(b.repository) || (a.mirror ?? '').localeCompare(b.mirror ?? ''));
  }

  private async lookNow(names: readonly string[], reclaimable: boolean, log: Logger): Promise<void> {
    const policy = this.o.policy;
    for (const name of names) {
      if (this.o.signal.aborted) return;
      const mirrors = policy.repositories[name]?.mirrors ?? [];
      let steps: JobStep[];
      try {
        steps = [infoStep(policy, name, this.o.env, reclaimable), ...(mirrors.length > 0 ? mirrorLagSteps(policy, name, this.o.env) : [])];
      } catch (e) {
        log.warn({ repository: name, error: (e as Error).message }, 'cannot look at the repository');
        continue;
      }
      for (const [i, step] of steps.entries()) {
        if (this.o.signal.aborted) return;
        const r = await runStep(step, { cofferBin: this.o.cofferBin, env: this.o.env, workDir: this.o.workDir, signal: this.o.signal });
        if (r.s3) this.o.metrics.recordS3(r.s3);
        this.o.metrics.recordRun({ job: 'info', repository: step.labels.repository, stanza: '', target: step.labels.target, startedAt: r.startedAt, seconds: r.seconds, exitStatus: r.exitStatus, figures: r.figures });
        const mirror = i === 0 ? undefined : mirrors[i - 1];
        const look = this.record(name, step, r, mirror);
        if (!look.ok) log.warn({ repository: name, ...(mirror ? { mirror } : {}), exitStatus: r.exitStatus, error: r.error }, mirror ? 'measuring the mirror lag failed' : 'looking at the repository failed');
      }
    }
  }

  private record(name: string, step: JobStep, r: StepResult, mirror: string | undefined): RepositoryLook {
    const look: RepositoryLook = {
      repository: name,
      location: step.labels.repository,
      ...(mirror ? { mirror, target: step.labels.target } : {}),
      checkedAt: new Date(r.startedAt.getTime() + r.seconds * 1000).toISOString(),
      ok: r.exitStatus === 0,
      exitStatus: r.exitStatus,
      ...(r.error ? { error: r.error } : {}),
    };
    if (mirror && look.ok) {
      look.missingObjects = r.figures.mirror_missing_objects ?? 0;
      look.missingBytes = r.figures.mirror_missing_bytes ?? 0;
      look.lagSeconds = r.figures.mirror_lag_seconds ?? 0;
    }
    this.looks.set(mirror ? `${name}→${mirror}` : name, look);
    return look;
  }
}
