/**
 * Removing a sandbox from a signal handler, where nothing asynchronous runs
 * any more: the server is stopped at once (SIGQUIT to the postmaster named in
 * postmaster.pid, "immediate shutdown"), waited for up to ten seconds, and
 * the directory deleted.
 */
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { postmasterPid, processAlive } from './process-alive.js';

export function removeSandbox(sandbox: string): void {
  const pid = postmasterPid(join(sandbox, 'data'));
  if (pid !== undefined) {
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
