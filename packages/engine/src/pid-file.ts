/** Files whose first line is a process id (postmaster.pid, Coffer's own lock files): is that process alive? */
import { readFile } from 'node:fs/promises';

export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    // EPERM: alive, owned by another user.
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Whether the file at `path` names a live process. A missing file: false. A
 * first line that is no pid counts as `unreadable` says (a server's pid file
 * half-written is safer taken as in use; a lock of ours, as stale).
 */
export async function pidFileAlive(path: string, unreadable: boolean): Promise<boolean> {
  const text = await readFile(path, 'utf8').catch(() => undefined);
  if (text === undefined) return false;
  const pid = Number(text.split('\n')[0]);
  if (!Number.isInteger(pid) || pid <= 0) return unreadable;
  return processAlive(pid);
}
