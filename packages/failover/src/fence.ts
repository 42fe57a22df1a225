/**
 * Fencing a local PostgreSQL server, the way that cannot be argued with:
 *
 * 1. `standby.signal` is written (and synced) into its data directory first,
 *    so whatever starts it again — systemd's Restart=, an operator, a healed
 *    host — starts a standby that accepts no writes, never a primary.
 *    (`default_transaction_read_only` is no fence: any session may turn it
 *    off.)
 * 2. The postmaster gets SIGQUIT (immediate shutdown: every backend exits
 *    at once, nothing more commits);
 * 3. after `graceMs`, every process still running in the data directory (the
 *    postmaster and its children all run with it as their working directory)
 *    gets SIGKILL.
 *
 * Synchronous and from plain system calls, so the watchdog can run it from
 * a timer or a signal handler without anything else of the process working.
 */
import { closeSync, fsyncSync, openSync, readdirSync, readlinkSync, realpathSync, statSync, chownSync } from 'node:fs';
import { join } from 'node:path';
import { postmasterPid, processAlive } from '@coffer/engine';

export interface FenceReport {
  dataDir: string;
  /** Whether a server was running when the fence began. */
  wasRunning: boolean;
  /** Processes that got SIGKILL after the grace period. */
  killed: number[];
  ms: number;
}

const pause = new Int32Array(new SharedArrayBuffer(4));
const sleep = (ms: number): void => void Atomics.wait(pause, 0, 0, ms);

/** Processes whose working directory is `dir`. */
export function processesIn(dir: string): number[] {
  let real: string;
  try {
    real = realpathSync(dir);
  } catch {
    return [];
  }
  const out: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name) || Number(name) === process.pid) continue;
    try {
      if (readlinkSync(`/proc/${name}/cwd`) === real && processAlive(Number(name))) out.push(Number(name));
    } catch {
      // Gone, or not ours to look at.
    }
  }
  return out;
}

/** Marks `dataDir` to start as a standby: its next start, whoever makes it, accepts no writes. */
export function markStandby(dataDir: string): void {
  const path = join(dataDir, 'standby.signal');
  const fd = openSync(path, 'a', 0o600);
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  try {
    // Owned like the directory, so the server (not root) may remove it when it is promoted again.
    const { uid, gid } = statSync(dataDir);
    chownSync(path, uid, gid);
  } catch {
    // Not root: it is ours already.
  }
  const dir = openSync(dataDir, 'r');
  try {
    fsyncSync(dir);
  } finally {
    closeSync(dir);
  }
}

/** Stops the server in `dataDir` now and keeps it from starting as a primary again. */
export function fenceServer(dataDir: string, options: { graceMs?: number } = {}): FenceReport {
  const began = performance.now();
  markStandby(dataDir);
  const pid = postmasterPid(dataDir);
  const inside = processesIn(dataDir);
  const running = pid !== undefined && inside.includes(pid);
  // The postmaster first (it stops the rest); every other process too, for a postmaster already gone (killed,
  // crashed) leaves backends that would finish what they were doing.
  for (const p of running ? [pid, ...inside.filter((x) => x !== pid)] : inside) {
    try {
      process.kill(p, 'SIGQUIT');
    } catch {
      // Exited between the look and the signal.
    }
  }
  const until = performance.now() + (options.graceMs ?? 2000);
  let left = processesIn(dataDir);
  while (left.length > 0 && performance.now() < until) {
    sleep(20);
    left = processesIn(dataDir);
  }
  for (const p of left) {
    try {
      process.kill(p, 'SIGKILL');
    } catch {
      // Gone.
    }
  }
  return { dataDir, wasRunning: inside.length > 0, killed: left, ms: performance.now() - began };
}
