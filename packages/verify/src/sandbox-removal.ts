/**
 * Removing sandboxes. From a signal handler, where nothing asynchronous runs
 * any more, the run's own sandbox: its server stopped at once (SIGQUIT to the
 * postmaster, "immediate shutdown"), waited for up to ten seconds, the
 * directory deleted. And at the start of a run, the sandboxes of runs that
 * were killed outright (SIGKILL, a lost host): a sandbox names the process
 * that made it, and one whose maker is gone is stopped and removed the same
 * way, so a server never lingers in its namespace and disk never fills with
 * old restores.
 */
import { readdirSync, readFileSync, readlinkSync, realpathSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { postmasterPid, processAlive } from './process-alive.js';

/** The sandbox directories' common prefix. */
export const SANDBOX_PREFIX = 'coffer-verify-';
const OWNER = 'owner.json';

/** When `pid` started (clock ticks after boot, from /proc): with the pid, names a process even after its number is reused. */
function startTicks(pid: number): string | undefined {
  try {
    // The command name may hold spaces and parentheses: fields count from the last ')'.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  } catch {
    return undefined;
  }
}

/** Marks `sandbox` as this process's. */
export function claimSandbox(sandbox: string): void {
  writeFileSync(join(sandbox, OWNER), JSON.stringify({ pid: process.pid, start: startTicks(process.pid) }) + '\n');
}

export function removeSandbox(sandbox: string): void {
  const data = join(sandbox, 'data');
  const pid = postmasterPid(data);
  // Only a postmaster that runs in this data directory: a stale pid file's number may belong to anyone now.
  if (pid !== undefined && runsIn(pid, data)) {
    try {
      process.kill(pid, 'SIGQUIT');
    } catch {
      // Gone already.
    }
    const until = Date.now() + 10_000;
    const pause = new Int32Array(new SharedArrayBuffer(4));
    while (processAlive(pid) && Date.now() < until) Atomics.wait(pause, 0, 0, 50);
  }
  rmSync(sandbox, { recursive: true, force: true });
}

function runsIn(pid: number, data: string): boolean {
  try {
    return readlinkSync(`/proc/${pid}/cwd`) === realpathSync(data);
  } catch {
    return false;
  }
}

/**
 * Stops and removes the sandboxes under `parent` whose maker is gone; a
 * sandbox of a run still going (here or on another verify) is left alone.
 * Returns the directories removed.
 */
export function removeStaleSandboxes(parent: string): string[] {
  const removed: string[] = [];
  let names: string[];
  try {
    names = readdirSync(parent).filter((n) => n.startsWith(SANDBOX_PREFIX));
  } catch {
    return removed;
  }
  for (const name of names) {
    const dir = join(parent, name);
    let owner: { pid?: number; start?: string } | undefined;
    try {
      owner = JSON.parse(readFileSync(join(dir, OWNER), 'utf8')) as { pid?: number; start?: string };
    } catch {
      // Made before it was claimed (the maker died in between), or not ours to judge: only an unclaimed one
      // with no server in it is taken, and only once it is a minute old.
      owner = undefined;
    }
    const alive = owner?.pid !== undefined && processAlive(owner.pid) && startTicks(owner.pid) === owner.start;
    if (alive) continue;
    if (!owner && !unclaimedAndOld(dir)) continue;
    removeSandbox(dir);
    removed.push(dir);
  }
  return removed;
}

function unclaimedAndOld(dir: string): boolean {
  try {
    const { mtimeMs } = statSync(dir);
    return Date.now() - mtimeMs > 60_000 && postmasterPid(join(dir, 'data')) === undefined;
  } catch {
    return false;
  }
}
