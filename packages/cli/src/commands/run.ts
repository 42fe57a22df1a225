/** `coffer run JOB`: one job of the policy, once — for cron, systemd timers and Kubernetes CronJobs. */
import { basename, dirname, extname, join } from 'node:path';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { InvalidArgumentError } from '@coffer/engine';
import { COFFER_BIN, CommandExit, intOption, type CliContext } from '../context.js';
import { policyPath, POLICY_OPTION } from './policy.js';

const RUNNABLE = ['backup', 'expire', 'verify', 'drill', 'mirror', 'gc'] as const;

/** One textfile per step (`coffer.prom` → `coffer-backup-main.prom`), so jobs do not overwrite each other's series. */
function stepTextfile(base: string, step: string): string {
  const ext = extname(base) || '.prom';
  const slug = step.replace(/[^A-Za-z0-9_.-]+/g, '-').replace(/^-+|-+$/g, '');
  return join(dirname(base), `${basename(base, extname(base))}-${slug}${ext}`);
}

export function register(ctx: CliContext): void {
  const { program, io, globals, say } = ctx;
  program
    .command('run <job>')
    .description(`run one job of the policy once (${RUNNABLE.join(', ')}), as the agent would: its schedule's tries, secrets from the environment or files the policy names; the exit status is the job's`)
    .option(...POLICY_OPTION)
    .option('--cluster <name>', 'the cluster the job is about (backup, expire, verify, drill); default: the only one the policy schedules for this job')
    .option('--repository <name>', 'the repository the job is about (mirror, gc); default: the only one the policy schedules for this job')
    .option('--drill <kind>', "the drill job's kind: restore, verify, failover or evacuate (default: the schedule's, else restore)", (v: string) => {
      if (v !== 'restore' && v !== 'verify' && v !== 'failover' && v !== 'evacuate') throw new InvalidArgumentError('--drill', `expected restore, verify, failover or evacuate, got ${JSON.stringify(v)}`);
      return v;
    })
    .option('--attempts <n>', "tries before the job counts as failed (default: the schedule's, else 1)", intOption('--attempts', 1, 20))
    .option('--json', 'print the outcome as JSON (each step\'s exit status, seconds and figures)')
    .action(async (job: string, o: { policy?: string; cluster?: string; repository?: string; drill?: 'restore' | 'verify' | 'failover' | 'evacuate'; attempts?: number; json?: boolean }) => {
      if (!(RUNNABLE as readonly string[]).includes(job)) throw new InvalidArgumentError('job', `expected one of ${RUNNABLE.join(', ')}, got ${JSON.stringify(job)}${job === 'wal' ? ' (the wal job runs under `coffer agent`)' : ''}`);
      const { loadPolicy, runJob } = await import('@coffer/agent');
      const file = policyPath(o, io.env);
      const policy = await loadPolicy(file);
      const about = job === 'mirror' || job === 'gc' ? o.repository : o.cluster;
      const scheduled = policy.schedules.filter((s) => s.job === job && (about === undefined || (s.cluster ?? s.repository) === about) && (o.drill === undefined || (s.drill ?? 'restore') === o.drill));
      if (about === undefined && scheduled.length !== 1) {
        const flag = job === 'mirror' || job === 'gc' ? '--repository' : '--cluster';
        throw new InvalidArgumentError(flag, scheduled.length === 0 ? `${file} schedules no ${job} job: name what it is about with ${flag}` : `${file} schedules ${scheduled.length} ${job} jobs (${scheduled.map((s) => s.cluster ?? s.repository).join(', ')}): choose one with ${flag}`);
      }
      const name = about ?? scheduled[0]!.cluster ?? scheduled[0]!.repository ?? (scheduled[0]!.drill === 'failover' ? policy.failover?.cluster : scheduled[0]!.drill === 'evacuate' ? policy.drills?.evacuate?.cluster : undefined);
      const drill = job === 'drill' ? (o.drill ?? scheduled[0]?.drill) : undefined;
      const spec = job === 'mirror' || job === 'gc' ? { job: job as 'mirror' | 'gc', repository: name! } : { job: job as 'backup' | 'expire' | 'verify' | 'drill', cluster: name!, ...(drill ? { drill } : {}) };
      // Each step's metrics go to a textfile of its own when the command line or the policy asks for one.
      const textfile = globals().metricsTextfile ?? io.env.COFFER_METRICS_TEXTFILE ?? policy.metrics?.textfile;
      const env = { ...io.env };
      delete env.COFFER_METRICS_TEXTFILE;
      const workDir = await mkdtemp(join(tmpdir(), 'coffer-run-'));
      // Steps that said why they failed themselves; for the others (a secret not there: nothing started) the reason is given here.
      const spoke = new Set<string>();
      try {
        const outcome = await runJob(policy, spec, {
          cofferBin: COFFER_BIN,
          policyFile: file,
          env,
          ...(textfile ? { stepEnv: (step) => ({ COFFER_METRICS_TEXTFILE: stepTextfile(textfile, step.name) }) } : {}),
          workDir,
          attempts: o.attempts ?? scheduled[0]?.attempts ?? 1,
          retryDelayMs: (policy.agent?.retryDelaySeconds ?? 60) * 1000,
          onStep: (step, attempt) => {
            if (attempt > 1) io.stderr.write(`coffer: run: ${step.name}: try ${attempt}\n`);
          },
          onLine: (step, stream, line) => {
            if (stream === 'stderr') {
              spoke.add(step.name);
              io.stderr.write(line + '\n');
            }
            else if (!o.json) io.stdout.write(line + '\n');
          },
        });
        if (o.json) say(JSON.stringify({ job: spec.job, about: name, ok: outcome.ok, tries: outcome.tries, steps: outcome.steps.map((s) => ({ step: s.step.name, exitStatus: s.exitStatus, seconds: s.seconds, figures: s.figures, ...(s.error ? { error: s.error } : {}) })) }, null, 2));
        const failed = outcome.steps.find((s) => s.exitStatus !== 0);
        if (failed) throw new CommandExit(failed.exitStatus, `run: ${failed.step.name} failed (exit ${failed.exitStatus})${failed.error && !spoke.has(failed.step.name) ? `: ${failed.error}` : ''}`);
      } finally {
        await rm(workDir, { recursive: true, force: true });
      }
    });
}
