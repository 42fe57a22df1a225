/**
 * Whether a process still runs. A server started with `pg_ctl` is inherited
 * by whatever reaps orphans here — in a container, often nothing — so once it
 * exits it may stay a zombie: `kill(pid, 0)` still succeeds, and waiting on
 * it would wait for nothing. A zombie counts as gone.
 */
import { readFileSync } from 'node:fs';

export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

/** The postmaster named in `data`/postmaster.pid, if that file is there. */
export function postmasterPid(data: string): number | undefined {
  try {
    const pid = Number(readFileSync(`${data}/postmaster.pid`, 'utf8').split('\n')[0]);
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}
