/**
 * Running a job: each step is a `coffer` child process (so a busy job never
 * stalls the agent, and a crash takes one job down, not the agent), with
 * retries and a doubling wait for failures that another try may cure. A
 * failure another try cannot change — bad arguments, a wrong key, a
 * verification that found a broken backup — is not retried.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { constants } from 'node:os';
import { CofferError } from '@coffer/engine';
import type { Policy } from '../policy/schema.js';
import { byLine } from './child-lines.js';
import { jobSteps, type JobSpec, type JobStep } from './job-steps.js';

export interface StepResult {
  step: Pick<JobStep, 'name' | 'labels'>;
  startedAt: Date;
  seconds: number;
  /** The child's exit status; 128 + the signal's number when a signal ended it. */
  exitStatus: number;
  /** Figures the child reported for its metrics (name without the `coffer_` prefix). */
  figures: Record<string, number>;
  /** The last line the child wrote on stderr, if it failed (its error message). */
  error?: string;
  /** S3 requests the child made, per store. */
  s3?: S3Usage[];
}

/** What one run asked of one S3 store (the counters `S3Store` keeps). */
export interface S3Usage {
  location: string;
  byOperation: Record<string, number>;
  retries: number;
  bytesSent: number;
  bytesReceived: number;
}

export interface JobOutcome {
  spec: JobSpec;
  /** The last try of each step. */
  steps: StepResult[];
  tries: number;
  ok: boolean;
  /** Stopped because the agent was told to stop. */
  stopped: boolean;
}

export interface RunJobOptions {
  /** The `coffer` entry point (its bin script). */
  cofferBin: string;
  /** The environment children start from, and secrets are read from (default: this process's). */
  env?: NodeJS.ProcessEnv;
  /** Where children write their run records (a directory only this user can write). */
  workDir: string;
  /** Tries per step (default 3). */
  attempts?: number;
  /** Wait before the second try, doubled after each further failure (default 60 s). */
  retryDelayMs?: number;
  /** The policy file `policy` was read from (the failover drill reads it itself). */
  policyFile?: string;
  /** More environment for one step (e.g. a metrics textfile of its own). */
  stepEnv?: (step: JobStep) => Record<string, string>;
  /** Told each line a child writes. */
  onLine?: (step: JobStep, stream: 'stdout' | 'stderr', line: string) => void;
  /** Told before each try of each step. */
  onStep?: (step: JobStep, attempt: number) => void;
  /** Aborted: running children get SIGTERM (SIGKILL after `stopTimeoutMs`), no further tries start. */
  signal?: AbortSignal;
  stopTimeoutMs?: number;
}

/** Exit statuses another try will not change (see the CLI's exit-codes). */
const FINAL = new Set([2, 3, 4, 5, 6, 7, 13, 15, 21, 26, 27, 30, 32, 33, 34]);

/** Whether a failed step is worth another try. */
export function retryable(exitStatus: number): boolean {
  return exitStatus !== 0 && !FINAL.has(exitStatus) && exitStatus < 128;
}

export async function runJob(policy: Policy, spec: JobSpec, options: RunJobOptions): Promise<JobOutcome> {
  const env = options.env ?? process.env;
  const attempts = options.attempts ?? 3;
  let steps: JobStep[];
  try {
    steps = jobSteps(policy, spec, env, options.policyFile);
  } catch (e) {
    // A secret that is not there, a name the policy lacks: the job fails as the CLI would, and says why.
    if (!(e instanceof CofferError)) throw e;
    const result: StepResult = { step: { name: `${spec.job}`, labels: { command: spec.job, repository: '', stanza: '', target: '' } }, startedAt: new Date(), seconds: 0, exitStatus: 3, figures: {}, error: e.message };
    return { spec, steps: [result], tries: 1, ok: false, stopped: false };
  }
  const last = new Map<JobStep, StepResult>();
  let pending = steps;
  let tries = 0;
  for (let attempt = 1; attempt <= attempts && pending.length > 0 && !options.signal?.aborted; attempt++) {
    tries = attempt;
    if (attempt > 1) await sleep((options.retryDelayMs ?? 60_000) * 2 ** (attempt - 2), options.signal);
    if (options.signal?.aborted) break;
    const failed: JobStep[] = [];
    for (const step of pending) {
      if (options.signal?.aborted) break;
      options.onStep?.(step, attempt);
      const r = await runStep(step, options);
      last.set(step, r);
      if (retryable(r.exitStatus)) failed.push(step);
    }
    pending = failed;
  }
  const results = steps.map((s) => last.get(s)).filter((r): r is StepResult => r !== undefined);
  const ok = results.length === steps.length && results.every((r) => r.exitStatus === 0);
  // A job that ended well just as the stop came is done, not interrupted.
  return { spec, steps: results, tries, ok, stopped: options.signal?.aborted === true && !ok };
}

/** Runs one step as a child process; resolves when it has exited. */
export async function runStep(step: JobStep, options: Pick<RunJobOptions, 'cofferBin' | 'env' | 'stepEnv' | 'workDir' | 'onLine' | 'signal' | 'stopTimeoutMs'>): Promise<StepResult> {
  const record = join(options.workDir, `run-${randomBytes(8).toString('hex')}.json`);
  const startedAt = new Date();
  const t0 = performance.now();
  const child = spawn(process.execPath, [options.cofferBin, ...step.args], {
    env: { ...(options.env ?? process.env), ...step.env, ...options.stepEnv?.(step), COFFER_RUN_RECORD: record },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let lastError: string | undefined;
  const lines = (stream: 'stdout' | 'stderr') =>
    byLine((line) => {
      if (stream === 'stderr' && line.trim() !== '') lastError = line;
      options.onLine?.(step, stream, line);
    });
  child.stdout.on('data', lines('stdout'));
  child.stderr.on('data', lines('stderr'));
  let killTimer: NodeJS.Timeout | undefined;
  const stop = () => {
    child.kill('SIGTERM');
    killTimer = setTimeout(() => child.kill('SIGKILL'), options.stopTimeoutMs ?? 60_000);
  };
  if (options.signal?.aborted) stop();
  else options.signal?.addEventListener('abort', stop, { once: true });
  const exitStatus = await new Promise<number>((resolve) => {
    child.once('error', (e) => {
      lastError = `cannot start coffer: ${e.message}`;
      resolve(127);
    });
    child.once('close', (code, signal) => resolve(code ?? 128 + (signal ? (constants.signals[signal] ?? 0) : 0)));
  });
  clearTimeout(killTimer);
  options.signal?.removeEventListener('abort', stop);
  let figures: Record<string, number> = {};
  let s3: S3Usage[] | undefined;
  try {
    const parsed = JSON.parse(await readFile(record, 'utf8')) as { figures?: Record<string, number>; s3?: S3Usage[] };
    figures = parsed.figures ?? {};
    if (Array.isArray(parsed.s3) && parsed.s3.length > 0) s3 = parsed.s3;
  } catch {
    // A child killed before it wrote its record reported nothing: its exit status says what happened.
  }
  await rm(record, { force: true });
  return { step: { name: step.name, labels: step.labels }, startedAt, seconds: (performance.now() - t0) / 1000, exitStatus, figures, ...(s3 ? { s3 } : {}), ...(exitStatus !== 0 && lastError ? { error: lastError } : {}) };
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}
