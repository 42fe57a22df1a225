/**
 * Removing a sandbox from a signal handler, where nothing asynchronous runs
 * any more: the server is stopped at once (SIGQUIT to the postmaster named in
 * postmaster.pid, "immediate shutdown"), waited for up to ten seconds, and
 * the directory deleted.
 */
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export function removeSandbox(sandbox: string): void {
  let pid: number | undefined;
  try {
    pid = Number(readFileSync(join(sandbox, 'data', 'postmaster.pid'), 'utf8').split('\n')[0]);
  } catch {
    pid = undefined;
  }
  if (pid && Number.isInteger(pid) && pid > 0) {
    try {
      process.kill(pid, 'SIGQUIT');
    } catch {
      // Gone already.
    }
    const until = Date.now() + 10_000;
    const pause = new Int32Array(new SharedArrayBuffer(4));
    while (alive(pid) && Date.now() < until) Atomics.wait(pause, 0, 0, 50);
  }
  rmSync(sandbox, { recursive: true, force: true });
}
