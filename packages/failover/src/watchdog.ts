/**
 * The guard's side of the watchdog (see `watchdog-main.ts`): a child process
 * armed with the lease's deadline after every renewal.
 */
import { fork, type ChildProcess } from 'node:child_process';
import type { FenceReport } from './fence.js';

export type WatchdogMessage =
  | { type: 'arm'; seq: number; deadline: number; dataDir: string }
  | { type: 'disarm'; seq: number }
  | { type: 'fence'; seq: number; dataDir: string; reason: string };

export type WatchdogReport = { type: 'ready'; pid: number } | { type: 'ack'; seq: number } | { type: 'fenced'; reason: string; report: FenceReport };

export class Watchdog {
  private seq = 0;
  private readonly acks = new Map<number, () => void>();
  private readonly fencedListeners: ((reason: string, report: FenceReport) => void)[] = [];
  private stopped = false;

  private constructor(private readonly child: ChildProcess) {
    child.on('message', (m: WatchdogReport) => {
      if (m.type === 'ack') {
        this.acks.get(m.seq)?.();
        this.acks.delete(m.seq);
      } else if (m.type === 'fenced') {
        for (const f of this.fencedListeners) f(m.reason, m.report);
      }
    });
  }

  /** Forks the watchdog and waits until it listens. */
  static async start(): Promise<Watchdog> {
    const child = fork(new URL('./watchdog-main.js', import.meta.url), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], serialization: 'json' });
    await new Promise<void>((resolve, reject) => {
      child.once('error', reject);
      child.once('exit', (code) => reject(new Error(`the failover watchdog exited (${code}) before it was ready`)));
      child.once('message', (m: WatchdogReport) => (m.type === 'ready' ? resolve() : reject(new Error('the failover watchdog did not start'))));
    });
    child.removeAllListeners('exit');
    child.removeAllListeners('error');
    child.on('error', () => undefined);
    return new Watchdog(child);
  }

  get pid(): number {
    return this.child.pid!;
  }

  onFenced(listener: (reason: string, report: FenceReport) => void): void {
    this.fencedListeners.push(listener);
  }

  /** Calls `listener` if the watchdog process ends without being stopped (killed, crashed): nothing fences at the deadline then. */
  onLost(listener: (how: string) => void): void {
    this.child.once('exit', (code, signal) => {
      if (!this.stopped) listener(signal ? `killed by ${signal}` : `exited ${code}`);
    });
  }

  /** Fence `dataDir` at `deadline` (host monotonic ms) unless armed again with a later one first. */
  arm(deadline: number, dataDir: string): Promise<void> {
    return this.send({ type: 'arm', seq: ++this.seq, deadline, dataDir });
  }

  disarm(): Promise<void> {
    return this.send({ type: 'disarm', seq: ++this.seq });
  }

  /** Fences now (from the watchdog, so a fence in progress survives this process). */
  fence(dataDir: string, reason: string): Promise<void> {
    return this.send({ type: 'fence', seq: ++this.seq, dataDir, reason });
  }

  /** Disarms and ends the watchdog. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.child.exitCode !== null || !this.child.connected) return;
    await this.disarm().catch(() => undefined);
    const exited = new Promise<void>((resolve) => this.child.once('exit', () => resolve()));
    this.child.disconnect();
    await exited;
  }

  private send(message: WatchdogMessage): Promise<void> {
    return new Promise((resolve, reject) => {
      this.acks.set(message.seq, resolve);
      this.child.send(message, (e) => {
        if (e) {
          this.acks.delete(message.seq);
          reject(e);
        }
      });
    });
  }
}
