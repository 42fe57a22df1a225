/**
 * `coffer agent`: the long-lived supervisor of a policy. It runs every
 * scheduled job when its cron expression says (croner, in the schedule's
 * time zone), each as a `coffer` child process; never runs two jobs on the
 * same repository at once (a later one waits its turn); catches up runs
 * missed while it was down, or interrupted, where the schedule says
 * `missed: run` (the default); retries failures another try may cure, with a
 * doubling wait; watches each cluster's WAL archive for RPO and archive lag;
 * keeps each streaming cluster's `coffer wal-receive` running; serves /metrics, /healthz, /readyz and /status; and on stop takes no new
 * work, tells running jobs to end (SIGTERM, which leaves a repository as it
 * was: nothing is committed half-written) and waits for them.
 */
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { Cron } from 'croner';
import type { Policy, Schedule } from '../policy/schema.js';
import { jobId, readSecret, receiverSlot, walReceiveStep, type JobSpec, type JobStep } from '../jobs/job-steps.js';
import { runJob, type JobOutcome } from '../jobs/run-job.js';
import { AgentMetrics } from '../metrics/agent-metrics.js';
import { ReceiverSupervisor, type ReceiverStatus } from '../wal/receiver-supervisor.js';
import { WalWatch, type WalStatus } from '../wal/wal-watch.js';
import { alertsNow, type Alert } from './alerts.js';
import { serveAgent, type AgentServer } from './http.js';
import { createLogger, type Logger } from './log.js';
import { RepositoryLooks, type RepositoryLook } from './repository-looks.js';
import { FailoverLooks, type FailoverLook } from './failover-looks.js';
import { replaceFile, StateFile, type AgentState, type StepRecord } from './state.js';

export const DEFAULT_STATE_DIR = '/var/lib/coffer/agent';

/** How often each watched cluster's write position is sampled (a light query), between full looks. */
const WAL_SAMPLE_MS = 1000;

/** How often every repository is looked at between jobs (size, leases, KMS keys, each mirror's lag), when the policy does not say. */
const REPOSITORY_LOOK_SECONDS = 300;

export interface AgentOptions {
  policy: Policy;
  /** Where the policy came from (shown in status). */
  policyFile: string;
  /** The `coffer` entry point children run. */
  cofferBin: string;
  /** The environment children start from and secrets are read from (default: this process's). */
  env?: NodeJS.ProcessEnv;
  logger?: Logger;
}

/** What `coffer status` shows: written to status.json in the state directory as it changes, and served at /status. */
export interface AgentStatus {
  pid: number;
  policy: string;
  startedAt: string;
  updatedAt: string;
  /** Set once the agent has stopped. */
  stoppedAt?: string;
  /** The address /metrics is served on. */
  listen?: string;
  jobs: JobStatus[];
  wal: WalStatus[];
  /** The last look at each repository and at each mirror's lag. */
  repositories: RepositoryLook[];
  /** Each streaming cluster's `coffer wal-receive`. */
  receivers: ReceiverStatus[];
  /** The last look at failover, when the policy has a failover section. */
  failover?: FailoverLook;
  alerts: Alert[];
}

export interface JobStatus {
  id: string;
  job: string;
  about: string;
  cron?: string;
  timeZone?: string;
  state: 'idle' | 'queued' | 'running';
  next?: string;
  runningSince?: string;
  lastRun?: AgentState['jobs'][string]['lastRun'];
  lastSuccess?: string;
}

interface Queued {
  spec: JobSpec;
  id: string;
  schedule?: Schedule;
  scheduled?: Date;
  reason: string;
}

export class Agent {
  readonly stateDir: string;
  readonly metrics: AgentMetrics;
  private readonly log: Logger;
  private readonly env: NodeJS.ProcessEnv;
  private readonly stateFile: StateFile;
  private state: AgentState = { version: 1, jobs: {} };
  private readonly crons = new Map<string, { cron: Cron; spec: JobSpec; schedule: Schedule }>();
  private readonly watches: WalWatch[] = [];
  private readonly receivers: ReceiverSupervisor[] = [];
  private readonly walStatus = new Map<string, WalStatus>();
  private walTimer: NodeJS.Timeout | undefined;
  private sampleTimer: NodeJS.Timeout | undefined;
  private lookTimer: NodeJS.Timeout | undefined;
  private failoverTimer: NodeJS.Timeout | undefined;
  private readonly looks: RepositoryLooks;
  private readonly failoverLooks: FailoverLooks | undefined;
  private readonly queue: Queued[] = [];
  private readonly active = new Map<string, { since: Date; done: Promise<void> }>();
  private readonly busy = new Set<string>();
  private readonly stopping = new AbortController();
  private server: AgentServer | undefined;
  private startedAt = new Date();
  private stoppedAt: Date | undefined;
  private ready = false;

  constructor(private readonly options: AgentOptions) {
    const p = options.policy;
    this.stateDir = p.agent?.stateDir ?? DEFAULT_STATE_DIR;
    this.stateFile = new StateFile(this.stateDir);
    this.metrics = new AgentMetrics(p);
    this.env = options.env ?? process.env;
    this.log = options.logger ?? createLogger(p.logs ?? {});
    this.looks = new RepositoryLooks({ policy: p, cofferBin: options.cofferBin, env: this.env, workDir: join(this.stateDir, 'runs'), signal: this.stopping.signal, metrics: this.metrics, log: this.log });
    if (p.failover) this.failoverLooks = new FailoverLooks({ policyFile: options.policyFile, cofferBin: options.cofferBin, env: this.env, metrics: this.metrics, log: this.log });
  }

  /** The address /metrics is served on, once started. */
  get listen(): string | undefined {
    return this.server?.address;
  }

  async start(): Promise<void> {
    const p = this.options.policy;
    this.startedAt = new Date();
    this.state = await this.stateFile.load();
    await mkdir(join(this.stateDir, 'runs'), { recursive: true, mode: 0o700 });
    if (p.metrics?.listen) {
      this.server = await serveAgent(p.metrics.listen, {
        metrics: () => this.metrics.text(),
        contentType: this.metrics.contentType,
        ready: () => this.ready && !this.stopping.signal.aborted,
        status: () => this.status(),
      });
      this.log.info({ listen: this.server.address }, 'serving /metrics, /healthz, /readyz and /status');
    }
    for (const [id, rec] of Object.entries(this.state.jobs)) {
      if (rec.lastRun) for (const s of rec.lastRun.steps) this.metrics.recordRun(toJobRun(s), rec.stepSuccess?.[s.name]);
      if (rec.running) this.log.warn({ jobId: id, since: rec.running.since }, 'a run was under way when the agent last stopped: it counts as missed');
    }
    const now = new Date();
    for (const s of p.schedules) {
      // The failover drill is about the failover section's cluster, the evacuation drill about region A's.
      const cluster = s.cluster ?? (s.drill === 'failover' ? p.failover?.cluster : s.drill === 'evacuate' ? p.drills?.evacuate?.cluster : undefined);
      const spec: JobSpec = { job: s.job, ...(cluster ? { cluster } : {}), ...(s.repository ? { repository: s.repository } : {}), ...(s.drill ? { drill: s.drill } : {}) };
      const id = jobId(spec);
      if (s.job === 'wal') {
        this.watchWal(spec);
        if (s.stream) this.superviseReceiver(spec.cluster!);
        continue;
      }
      const cron = new Cron(s.cron!, { timezone: s.timeZone ?? 'UTC', catch: true, protect: false }, (self: Cron) => {
        this.enqueue({ spec, id, schedule: s, scheduled: self.currentRun() ?? new Date(), reason: 'scheduled' });
        this.metrics.setNextRun(s.job, spec.cluster ?? spec.repository ?? '', self.nextRun() ?? undefined);
      });
      this.crons.set(id, { cron, spec, schedule: s });
      this.metrics.setNextRun(s.job, spec.cluster ?? spec.repository ?? '', cron.nextRun() ?? undefined);
      this.catchUp(id, spec, s, cron, now);
    }
    if (this.watches.length > 0) {
      const every = (p.agent?.walPollSeconds ?? 15) * 1000;
      const tick = () => {
        void this.lookAtWal().finally(() => {
          if (!this.stopping.signal.aborted) this.walTimer = setTimeout(tick, every);
        });
      };
      tick();
      // Between looks, the position alone, every second: what the RPO is measured from.
      this.sampleTimer = setInterval(() => {
        for (const w of this.watches) void w.sample().catch(() => undefined);
      }, WAL_SAMPLE_MS);
    }
    // Every repository now and every few minutes: a mirror falls behind, a store becomes unreachable, between jobs too.
    const lookEvery = (p.agent?.repositoryLookSeconds ?? REPOSITORY_LOOK_SECONDS) * 1000;
    const lookTick = () => {
      void this.looks
        .look(this.looks.all(), false)
        .then(() => this.writeStatus())
        .finally(() => {
          if (!this.stopping.signal.aborted) this.lookTimer = setTimeout(lookTick, lookEvery);
        });
    };
    lookTick();
    if (this.failoverLooks) {
      const looks = this.failoverLooks;
      const every = (p.agent?.failoverLookSeconds ?? 15) * 1000;
      const failoverTick = () => {
        void looks
          .look()
          .then(() => this.writeStatus())
          .finally(() => {
            if (!this.stopping.signal.aborted) this.failoverTimer = setTimeout(failoverTick, every);
          });
      };
      failoverTick();
    }
    this.ready = true;
    this.log.info({ policy: this.options.policyFile, stateDir: this.stateDir, jobs: this.crons.size, walWatches: this.watches.length }, 'agent started');
    await this.writeStatus();
  }

  /** Runs a job now, outside its schedule (what `coffer run` does in-process for a running agent's tests). */
  runNow(spec: JobSpec): void {
    this.enqueue({ spec, id: jobId(spec), reason: 'asked' });
  }

  /** Stops taking work, tells running jobs to end, waits for them, and saves what it knows. */
  async stop(reason = 'stop'): Promise<void> {
    if (this.stopping.signal.aborted) return;
    this.log.info({ reason, running: [...this.active.keys()] }, 'agent stopping: no new runs; running jobs are told to end');
    this.stopping.abort();
    this.ready = false;
    for (const { cron } of this.crons.values()) cron.stop();
    clearTimeout(this.walTimer);
    clearInterval(this.sampleTimer);
    clearTimeout(this.lookTimer);
    clearTimeout(this.failoverTimer);
    this.queue.length = 0;
    const grace = (this.options.policy.agent?.stopTimeoutSeconds ?? 30) * 1000;
    await Promise.all([...[...this.active.values()].map((a) => a.done), ...this.receivers.map((r) => r.stop(grace))]);
    await this.looks.idle();
    await Promise.all(this.watches.map((w) => w.close()));
    this.stoppedAt = new Date();
    await this.stateFile.save(this.state);
    await this.writeStatus();
    await this.server?.close();
    this.log.info('agent stopped');
  }

  private catchUp(id: string, spec: JobSpec, s: Schedule, cron: Cron, now: Date): void {
    const rec = this.state.jobs[id];
    if (!rec) return;
    const previous = cron.previousRuns(1, now)[0];
    const interrupted = rec.running !== undefined;
    const missed = rec.lastScheduled !== undefined && previous !== undefined && previous.getTime() > Date.parse(rec.lastScheduled);
    if (!interrupted && !missed) return;
    const why = interrupted ? `interrupted at ${rec.running!.since}` : `missed at ${previous!.toISOString()}`;
    if ((s.missed ?? 'run') === 'run') {
      this.log.info({ jobId: id }, `catching up a run ${why}`);
      this.enqueue({ spec, id, schedule: s, ...(previous ? { scheduled: previous } : {}), reason: `catch-up (${why})` });
    } else {
      this.log.info({ jobId: id }, `skipping a run ${why} (missed: skip)`);
      delete rec.running;
      if (previous) rec.lastScheduled = previous.toISOString();
    }
  }

  private enqueue(q: Queued): void {
    if (this.stopping.signal.aborted) return;
    if (this.active.has(q.id) || this.queue.some((x) => x.id === q.id)) {
      this.log.warn({ jobId: q.id }, `a ${q.reason} run is skipped: the previous run has not ended`);
      return;
    }
    this.queue.push(q);
    this.pump();
  }

  /** The repositories a job writes or reads: no two jobs on one repository run at once. */
  private repositoriesOf(spec: JobSpec): string[] {
    const p = this.options.policy;
    if (spec.repository !== undefined) return [spec.repository, ...(spec.job === 'mirror' ? (p.repositories[spec.repository]?.mirrors ?? []) : [])];
    const cluster = spec.cluster === undefined ? undefined : p.clusters[spec.cluster];
    return cluster ? [cluster.repository] : [];
  }

  private pump(): void {
    for (let i = 0; i < this.queue.length; ) {
      const q = this.queue[i]!;
      const repos = this.repositoriesOf(q.spec);
      if (repos.some((r) => this.busy.has(r))) {
        i++;
        continue;
      }
      this.queue.splice(i, 1);
      for (const r of repos) this.busy.add(r);
      const since = new Date();
      const done = this.execute(q, since).finally(() => {
        for (const r of repos) this.busy.delete(r);
        this.active.delete(q.id);
        this.pump();
        void this.writeStatus();
      });
      this.active.set(q.id, { since, done });
    }
    void this.writeStatus();
  }

  private async execute(q: Queued, since: Date): Promise<void> {
    const p = this.options.policy;
    const rec = (this.state.jobs[q.id] ??= {});
    rec.running = { since: since.toISOString(), ...(q.scheduled ? { scheduled: q.scheduled.toISOString() } : {}) };
    if (q.scheduled) rec.lastScheduled = q.scheduled.toISOString();
    await this.stateFile.save(this.state);
    const about = q.spec.cluster ?? q.spec.repository ?? '';
    this.metrics.setRunning(q.spec.job, about, true);
    const log = this.log.child({ jobId: q.id, job: q.spec.job, ...(q.spec.cluster ? { cluster: q.spec.cluster } : {}), ...(q.spec.repository ? { repository: q.spec.repository } : {}) });
    log.info({ reason: q.reason }, 'job starts');
    let outcome: JobOutcome;
    try {
      outcome = await runJob(p, q.spec, {
        cofferBin: this.options.cofferBin,
        policyFile: this.options.policyFile,
        env: this.env,
        workDir: join(this.stateDir, 'runs'),
        attempts: q.schedule?.attempts ?? 3,
        retryDelayMs: (p.agent?.retryDelaySeconds ?? 60) * 1000,
        stopTimeoutMs: (p.agent?.stopTimeoutSeconds ?? 60) * 1000,
        signal: this.stopping.signal,
        onStep: (step: JobStep, attempt: number) => log.info({ step: step.name, attempt, repositoryLocation: step.labels.repository, ...(step.labels.target ? { target: step.labels.target } : {}) }, attempt > 1 ? 'step retried' : 'step starts'),
        onLine: (step: JobStep, stream, line) => {
          if (line.trim() === '') return;
          if (stream === 'stderr') log.warn({ step: step.name, stream }, line);
          else log.debug({ step: step.name, stream }, line);
        },
      });
    } catch (e) {
      log.error({ error: (e as Error).message }, 'job could not run');
      delete rec.running;
      this.metrics.setRunning(q.spec.job, about, false);
      return;
    }
    const endedAt = new Date();
    for (const s of outcome.steps) if (s.s3) this.metrics.recordS3(s.s3);
    const steps: StepRecord[] = outcome.steps.map((s) => ({ name: s.step.name, labels: s.step.labels, startedAt: s.startedAt.toISOString(), seconds: s.seconds, exitStatus: s.exitStatus, figures: s.figures, ...(s.error ? { error: s.error } : {}) }));
    if (outcome.stopped) {
      // Left marked as running: the next start sees an interrupted run and catches it up.
      log.warn({ steps: steps.map((s) => ({ step: s.name, exitStatus: s.exitStatus })) }, 'job stopped with the agent');
    } else {
      delete rec.running;
      rec.lastRun = { startedAt: since.toISOString(), endedAt: endedAt.toISOString(), ok: outcome.ok, tries: outcome.tries, stopped: false, steps };
      rec.stepSuccess ??= {};
      for (const s of steps) {
        this.metrics.recordRun(toJobRun(s), rec.stepSuccess[s.name]);
        if (s.exitStatus === 0) rec.stepSuccess[s.name] = (Date.parse(s.startedAt) + s.seconds * 1000) / 1000;
      }
      if (outcome.ok) rec.lastSuccess = endedAt.toISOString();
      const summary = { ok: outcome.ok, tries: outcome.tries, seconds: (endedAt.getTime() - since.getTime()) / 1000, steps: steps.map((s) => ({ step: s.name, exitStatus: s.exitStatus, seconds: Number(s.seconds.toFixed(3)), ...(s.error ? { error: s.error } : {}) })) };
      if (outcome.ok) log.info(summary, 'job succeeded');
      else log.error(summary, 'job failed');
    }
    this.metrics.setRunning(q.spec.job, about, false);
    await this.stateFile.save(this.state);
    // After a job that changed them: each repository's size, backups and leases, each mirror's lag (and after
    // expire or gc, what gc would free).
    if (outcome.ok && !this.stopping.signal.aborted && q.spec.job !== 'verify' && q.spec.job !== 'drill') {
      await this.looks.look(this.repositoriesOf(q.spec), q.spec.job === 'expire' || q.spec.job === 'gc', log);
    }
  }

  private watchWal(spec: JobSpec): void {
    const p = this.options.policy;
    const name = spec.cluster!;
    const cluster = p.clusters[name]!;
    const repository = p.repositories[cluster.repository]!;
    const password = cluster.password;
    this.watches.push(
      new WalWatch({
        cluster: name,
        stanza: cluster.stanza ?? name,
        repository: repository.location,
        connection: cluster.connection,
        ...(password ? { password: () => readSecret(password, `clusters.${name}.password`, this.env) } : {}),
        ...(receiverSlot(p, name) ? { receiverSlot: receiverSlot(p, name)! } : {}),
      }),
    );
  }

  private superviseReceiver(cluster: string): void {
    const p = this.options.policy;
    const supervisor = new ReceiverSupervisor({
      cluster,
      slot: receiverSlot(p, cluster)!,
      cofferBin: this.options.cofferBin,
      step: () => walReceiveStep(p, cluster, this.env),
      env: this.env,
      log: this.log,
      onChange: (s) => {
        this.metrics.recordReceiver(s);
        void this.writeStatus();
      },
    });
    this.receivers.push(supervisor);
    this.metrics.recordReceiver(supervisor.status());
    supervisor.start();
  }

  private async lookAtWal(): Promise<void> {
    const now = new Date();
    for (const w of this.watches) {
      const s = await w.look(now);
      const before = this.walStatus.get(w.target.cluster);
      if (!s.ok && before?.ok !== false) this.log.error({ cluster: s.cluster, error: s.error }, 'cluster does not answer');
      if (s.ok && before?.ok === false) this.log.info({ cluster: s.cluster }, 'cluster answers again');
      this.walStatus.set(w.target.cluster, s);
      this.metrics.recordWal(s);
    }
    await this.writeStatus();
  }

  status(): AgentStatus {
    const now = new Date();
    const jobs: JobStatus[] = [];
    const seen = new Set<string>();
    for (const [id, { cron, spec, schedule }] of this.crons) {
      seen.add(id);
      jobs.push(this.jobStatus(id, spec, schedule, cron));
    }
    for (const q of this.queue) if (!seen.has(q.id)) (seen.add(q.id), jobs.push(this.jobStatus(q.id, q.spec)));
    for (const id of this.active.keys()) if (!seen.has(id)) (seen.add(id), jobs.push(this.jobStatus(id, specOf(id))));
    const wal = [...this.walStatus.values()];
    const repositories = this.looks.status();
    const receivers = this.receivers.map((r) => r.status());
    return {
      pid: process.pid,
      policy: this.options.policyFile,
      startedAt: this.startedAt.toISOString(),
      updatedAt: now.toISOString(),
      ...(this.stoppedAt ? { stoppedAt: this.stoppedAt.toISOString() } : {}),
      ...(this.server ? { listen: this.server.address } : {}),
      jobs,
      wal,
      repositories,
      receivers,
      ...(this.failoverLooks?.last() ? { failover: this.failoverLooks.last()! } : {}),
      alerts: alertsNow(this.options.policy, this.state, wal, now, repositories, receivers),
    };
  }

  private jobStatus(id: string, spec: JobSpec, schedule?: Schedule, cron?: Cron): JobStatus {
    const rec = this.state.jobs[id];
    const active = this.active.get(id);
    const next = cron && !this.stopping.signal.aborted ? cron.nextRun() : null;
    return {
      id,
      job: spec.job,
      about: spec.cluster ?? spec.repository ?? '',
      ...(schedule?.cron ? { cron: schedule.cron, timeZone: schedule.timeZone ?? 'UTC' } : {}),
      state: active ? 'running' : this.queue.some((q) => q.id === id) ? 'queued' : 'idle',
      ...(next ? { next: next.toISOString() } : {}),
      ...(active ? { runningSince: active.since.toISOString() } : {}),
      ...(rec?.lastRun ? { lastRun: rec.lastRun } : {}),
      ...(rec?.lastSuccess ? { lastSuccess: rec.lastSuccess } : {}),
    };
  }

  private writingStatus: Promise<void> = Promise.resolve();

  private writeStatus(): Promise<void> {
    const text = JSON.stringify(this.status(), null, 1);
    this.writingStatus = this.writingStatus.then(
      () => replaceFile(join(this.stateDir, 'status.json'), text, 0o644),
      () => replaceFile(join(this.stateDir, 'status.json'), text, 0o644),
    );
    return this.writingStatus.catch((e: Error) => this.log.error({ error: e.message }, 'cannot write status.json'));
  }
}

function specOf(id: string): JobSpec {
  const [job, about] = id.split(':') as [JobSpec['job'], string];
  return job === 'mirror' || job === 'gc' ? { job, repository: about } : { job, cluster: about };
}

function toJobRun(s: StepRecord) {
  return {
    job: s.labels.command,
    repository: s.labels.repository,
    stanza: s.labels.stanza,
    target: s.labels.target,
    startedAt: new Date(s.startedAt),
    seconds: s.seconds,
    exitStatus: s.exitStatus,
    figures: s.figures,
  };
}
