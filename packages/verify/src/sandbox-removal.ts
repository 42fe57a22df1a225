/**
 * Removing sandboxes. From a signal handler, where nothing asynchronous runs
 * any more, the run's own sandbox: its server stopped at once (SIGQUIT to the
 * postmaster, "immediate shutdown"), waited for up to ten seconds, the
 * directory deleted. And at the start of a run, the sandboxes of runs that
 * were killed outright (SIGKILL, a lost host): a sandbox's name names the
 * process that made it (pid and start time), and one whose maker is gone is
 * stopped and removed the same way, so a server never lingers in its
 * namespace and disk never fills with old restores.
 *
 * The owner is in the name rather than in a file written after the directory
 * is made, so no moment exists at which a killed run leaves a sandbox nobody
 * can judge.
 */
import { mkdtemp } from 'node:fs/promises';
import { readdirSync, readFileSync, readlinkSync, realpathSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { postmasterPid, processAlive } from '@coffer/engine';

/** The sandbox directories' common prefix. */
export const SANDBOX_PREFIX = 'coffer-verify-';
/** Where versions before the owner was in the name recorded it. */
const OWNER = 'owner.json';
/** `coffer-verify-<pid>.<start ticks>-<random>`, numbers in base 36 (a Unix socket's path inside must stay short). */
const OWNED_NAME = /^coffer-verify-([0-9a-z]+)\.([0-9a-z]+)-[^-]+$/;

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

/** Makes a new sandbox directory under `parent`, named for this process. */
export async function makeSandbox(parent: string): Promise<string> {
  const start = Number(startTicks(process.pid) ?? 0);
  return mkdtemp(join(parent, `${SANDBOX_PREFIX}${process.pid.toString(36)}.${start.toString(36)}-`));
}

function ownerOf(dir: string, name: string): { pid?: number; start?: string } | undefined {
  const named = OWNED_NAME.exec(name);
  if (named) return { pid: parseInt(named[1]!, 36), start: String(parseInt(named[2]!, 36)) };
  try {
    return JSON.parse(readFileSync(join(dir, OWNER), 'utf8')) as { pid?: number; start?: string };
  } catch {
    // Not ours to judge (another tool's directory under the same prefix), or an earlier version's killed
    // before it claimed it: left alone, as a directory this run cannot prove is a sandbox.
    return undefined;
  }
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
    const owner = ownerOf(dir, name);
    if (owner?.pid === undefined) continue;
    if (processAlive(owner.pid) && startTicks(owner.pid) === owner.start) continue;
    removeSandbox(dir);
    removed.push(dir);
  }
  return removed;
}
