/** A stand-in for `coffer wal-archiver` in tests of the notes archive_command confirms. */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFile } from 'node:fs/promises';

/** A live process named like the archiver, once it runs as that (until exec, a child's command line is its parent's); added to `started`, which the caller kills. */
export async function standInArchiver(started: ChildProcess[]): Promise<ChildProcess> {
  const child = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60000)', 'wal-archiver'], { stdio: 'ignore' });
  started.push(child);
  const end = Date.now() + 10_000;
  while (!(await readFile(`/proc/${child.pid}/cmdline`, 'utf8').catch(() => '')).includes('wal-archiver')) {
    if (Date.now() > end) throw new Error('the stand-in did not start');
    await new Promise((r) => setTimeout(r, 5));
  }
  return child;
}
