/**
 * Keeps a cluster's `coffer wal-receive` running: the agent starts it, logs
 * what it says, and starts it again whenever it ends — at once after a run
 * that lasted, with waits doubling to a minute after runs that ended quickly
 * (a wrong password, a server down), so a failing receiver neither spins nor
 * stays down long once the cause is gone. The receiver itself reconnects
 * after the failures another connection may cure; it exits on the others,
 * and this is what brings it back. Stopping sends SIGTERM: the receiver makes
 * durable what it received, then ends.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import type { Logger } from '../agent/log.js';
import { byLine } from '../jobs/child-lines.js';
import type { JobStep } from '../jobs/job-steps.js';

export interface ReceiverStatus {
  cluster: string;
  slot: string;
  /** The receiver is running and streaming. */
  up: boolean;
  pid?: number;
  /** When the running receiver started streaming. */
  since?: string;
  /** Times it was started again after ending. */
  restarts: number;
  /** How the last run ended (exit status or signal), and its last error line. */
  lastExit?: string;
  lastError?: string;
}

export interface SupervisorOptions {
  cluster: string;
  slot: string;
  cofferBin: string;
  /** The command line and environment, made again before each start (secrets read afresh). */
  step: () => JobStep;
  env: NodeJS.ProcessEnv;
  log: Logger;
  /** Called whenever the status changes (metrics, status.json). */
  onChange: (s: ReceiverStatus) => void;
  /** A run shorter than this counts as a quick failure (default 60 s). */
  settleMs?: number;
  /** The longest wait before starting again (default 60 s). */
  maxWaitMs?: number;
}

export class ReceiverSupervisor {
  private child: ChildProcess | undefined;
  private stopped = false;
  private timer: NodeJS.Timeout | undefined;
  private wait = 1000;
  private ended: Promise<void> = Promise.resolve();
  private readonly state: ReceiverStatus;

  constructor(private readonly options: SupervisorOptions) {
    this.state = { cluster: options.cluster, slot: options.slot, up: false, restarts: 0 };
  }

  status(): ReceiverStatus {
    return { ...this.state };
  }

  start(): void {
    if (this.stopped || this.child) return;
    const o = this.options;
    let step: JobStep;
    try {
      step = o.step();
    } catch (e) {
      // A secret that cannot be read now may be provisioned later: try again, loudly.
      this.state.lastError = (e as Error).message;
      o.log.error({ cluster: o.cluster, error: this.state.lastError }, 'cannot start the WAL receiver');
      this.again(false);
      return;
    }
    const startedAt = performance.now();
    const child = spawn(process.execPath, [o.cofferBin, ...step.args], { env: { ...o.env, ...step.env }, stdio: ['ignore', 'pipe', 'pipe'] });
    this.child = child;
    this.state.pid = child.pid;
    this.changed();
    o.log.info({ cluster: o.cluster, pid: child.pid, slot: o.slot }, 'WAL receiver started');
    const lines = (stream: 'stdout' | 'stderr') =>
      byLine((line) => {
        if (line.trim() === '') return;
        if (stream === 'stderr') {
          this.state.lastError = line;
          o.log.warn({ cluster: o.cluster, receiver: line }, 'WAL receiver');
          return;
        }
        if (/^streaming timeline /.test(line)) {
          this.state.up = true;
          this.state.since = new Date().toISOString();
          this.changed();
        }
        o.log.info({ cluster: o.cluster, receiver: line }, 'WAL receiver');
      });
    child.stdout!.on('data', lines('stdout'));
    child.stderr!.on('data', lines('stderr'));
    this.ended = new Promise<void>((resolve) => {
      const done = (how: string) => {
        this.child = undefined;
        this.state.up = false;
        delete this.state.pid;
        delete this.state.since;
        this.state.lastExit = how;
        if (!this.stopped) o.log.error({ cluster: o.cluster, exit: how, error: this.state.lastError }, 'WAL receiver ended; starting it again');
        this.changed();
        this.again(performance.now() - startedAt >= (o.settleMs ?? 60_000));
        resolve();
      };
      child.on('error', (e) => done(`not started: ${e.message}`));
      child.on('close', (code, signal) => done(signal ? `signal ${signal}` : `exit ${code}`));
    });
  }

  /** Stops the receiver (SIGTERM, then SIGKILL after `graceMs`) and starts it no more. */
  async stop(graceMs = 30_000): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    const child = this.child;
    if (!child) return;
    child.kill('SIGTERM');
    const kill = setTimeout(() => child.kill('SIGKILL'), graceMs);
    await this.ended;
    clearTimeout(kill);
  }

  private again(lasted: boolean): void {
    if (this.stopped) return;
    if (lasted) this.wait = 1000;
    const wait = this.wait;
    this.wait = Math.min(this.options.maxWaitMs ?? 60_000, this.wait * 2);
    this.timer = setTimeout(() => {
      this.state.restarts++;
      this.start();
    }, wait);
  }

  private changed(): void {
    this.options.onChange(this.status());
  }
}
