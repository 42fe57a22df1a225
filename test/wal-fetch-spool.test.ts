/**
 * restore_command's common case through the `coffer` script: a segment the
 * prefetcher spooled is moved into place without starting Node; one the
 * prefetcher is about to spool is waited for; anything else — no live
 * prefetcher, the spool on another file system, an option the script does
 * not know, a segment before where recovery stands, a file not archived —
 * runs the program. A Node that always exits 77 tells the program apart: the spooled file
 * then stays where it was.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { chmod, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import { coffer, COFFER_COMMAND } from './support/cli.js';

const SEG = (n: number) => `00000001000000000000${n.toString(16).toUpperCase().padStart(4, '0')}`;
let dir: string;
let pgdata: string;
let spool: string;
const held: ChildProcess[] = [];

/** A process whose command line has `wal-prefetch` as an argument, as a prefetcher's has; its pid in the spool's lock. */
function fakePrefetcher(lockDir: string): Promise<void> {
  const child = spawn('sh', ['-c', 'sleep 60', 'wal-prefetch'], { stdio: 'ignore' });
  held.push(child);
  return writeFile(join(lockDir, '.prefetch.lock'), String(child.pid));
}

/** What the program's run shows as: the status of the stand-in for Node. */
const PROGRAM = 77;

/** `coffer wal-fetch` as PostgreSQL calls it (in the data directory), with a Node that always exits PROGRAM. */
function fetch(args: string[]): Promise<{ status: number | null; ms: number }> {
  const t0 = performance.now();
  const child = spawn(COFFER_COMMAND, ['--repo', join(dir, 'no-repository'), 'wal-fetch', ...args], { cwd: pgdata, env: { PATH: process.env.PATH, COFFER_NODE: join(dir, 'node') }, stdio: 'ignore' });
  return new Promise((resolve) => child.on('close', (status) => resolve({ status, ms: performance.now() - t0 })));
}

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'coffer-spool-'));
  pgdata = join(dir, 'data');
  spool = join(pgdata, 'pg_wal', '.coffer-spool');
  await mkdir(spool, { recursive: true });
  await writeFile(join(dir, 'node'), `#!/bin/sh\nexit ${PROGRAM}\n`);
  await chmod(join(dir, 'node'), 0o755);
});
afterEach(async () => {
  for (const c of held.splice(0)) c.kill('SIGKILL');
  await rm(dir, { recursive: true, force: true });
});
afterAll(() => {
  for (const c of held) c.kill('SIGKILL');
});

describe('restore_command served from the spool by the coffer script', () => {
  it('moves a spooled segment into place and notes where recovery stands; each segment of a recovery in turn', async () => {
    await fakePrefetcher(spool);
    for (let n = 1; n <= 5; n++) await writeFile(join(spool, SEG(n)), `segment ${n}`);
    for (let n = 1; n <= 5; n++) {
      const r = await fetch([SEG(n), 'pg_wal/RECOVERYXLOG']);
      expect(r.status).toBe(0);
      expect(await readFile(join(pgdata, 'pg_wal', 'RECOVERYXLOG'), 'utf8')).toBe(`segment ${n}`);
      expect(await readFile(join(spool, '.wanted'), 'utf8')).toBe(SEG(n));
    }
    expect((await readdir(spool)).filter((f) => !f.startsWith('.'))).toEqual([]);
  });

  it('waits for the segment the prefetcher is about to spool, after the one recovery asked for last', async () => {
    await fakePrefetcher(spool);
    await writeFile(join(spool, '.wanted'), SEG(0x1ff));
    const pending = fetch([SEG(0x200), 'pg_wal/RECOVERYXLOG', '--prefetch', '2']);
    await new Promise((r) => setTimeout(r, 300));
    // The call told the prefetcher where recovery stands before waiting.
    expect(await readFile(join(spool, '.wanted'), 'utf8')).toBe(SEG(0x200));
    await writeFile(join(spool, SEG(0x200)), 'arrived');
    const r = await pending;
    expect(r.status).toBe(0);
    expect(r.ms).toBeGreaterThan(250);
    expect(await readFile(join(pgdata, 'pg_wal', 'RECOVERYXLOG'), 'utf8')).toBe('arrived');
  });

  it('runs the program for anything else, leaving the spool as it was', async () => {
    await writeFile(join(spool, SEG(7)), 'seven');
    // No prefetcher holds the spool (a dead pid, then a live process that is not one).
    await writeFile(join(spool, '.prefetch.lock'), '2147483646');
    expect((await fetch([SEG(7), 'pg_wal/RECOVERYXLOG'])).status).toBe(PROGRAM);
    const other = spawn('sleep', ['60'], { stdio: 'ignore' });
    held.push(other);
    await writeFile(join(spool, '.prefetch.lock'), String(other.pid));
    expect((await fetch([SEG(7), 'pg_wal/RECOVERYXLOG'])).status).toBe(PROGRAM);
    await fakePrefetcher(spool);
    // An option the script does not know; a history file not spooled nor noted; a third argument.
    expect((await fetch([SEG(7), 'pg_wal/RECOVERYXLOG', '--verbose'])).status).toBe(PROGRAM);
    expect((await fetch(['00000002.history', 'pg_wal/RECOVERYHISTORY'])).status).toBe(PROGRAM);
    expect((await fetch([SEG(7), 'pg_wal/RECOVERYXLOG', 'extra'])).status).toBe(PROGRAM);
    // Not spooled, and before where recovery stands (or on another timeline): not waited for.
    await writeFile(join(spool, '.wanted'), SEG(9));
    const before = await fetch([SEG(8), 'pg_wal/RECOVERYXLOG']);
    expect(before.status).toBe(PROGRAM);
    expect(before.ms).toBeLessThan(2000);
    expect((await fetch([`00000002${SEG(10).slice(8)}`, 'pg_wal/RECOVERYXLOG'])).status).toBe(PROGRAM);
    // A spool on another file system: a move would be a copy, not a rename.
    const elsewhere = await mkdtemp('/dev/shm/coffer-spool-');
    try {
      expect((await stat(elsewhere)).dev).not.toBe((await stat(pgdata)).dev);
      await fakePrefetcher(elsewhere);
      await writeFile(join(elsewhere, SEG(7)), 'seven');
      expect((await fetch([SEG(7), 'pg_wal/RECOVERYXLOG', '--spool', elsewhere])).status).toBe(PROGRAM);
      expect(await readFile(join(elsewhere, SEG(7)), 'utf8')).toBe('seven');
    } finally {
      await rm(elsewhere, { recursive: true, force: true });
    }
    expect(await readFile(join(spool, SEG(7)), 'utf8')).toBe('seven');
    // And with all of that right, served.
    expect((await fetch([SEG(7), 'pg_wal/RECOVERYXLOG', '--prefetch=2', '--queue-max', '64', '--system-id', '123'])).status).toBe(0);
  });

  it('answers "not archived" for timeline 1\'s history file, which no cluster archives, without a spool, a prefetcher or the program; the program answers the same without opening the repository', async () => {
    await rm(spool, { recursive: true, force: true });
    const r = await fetch(['00000001.history', 'pg_wal/RECOVERYHISTORY']);
    expect(r.status).toBe(1);
    expect(await stat(join(pgdata, 'pg_wal', 'RECOVERYHISTORY')).catch(() => undefined)).toBeUndefined();
    // Any other history file still goes to the program (the store decides), as before.
    expect((await fetch(['00000002.history', 'pg_wal/RECOVERYHISTORY'])).status).toBe(PROGRAM);
    // The program itself: the repository named does not exist, and is not opened.
    const program = await coffer(['--repo', join(dir, 'no-repository'), 'wal-fetch', '00000001.history', 'pg_wal/RECOVERYHISTORY'], {}, { cwd: pgdata });
    expect(program.status).toBe(1);
    expect(program.stderr).toBe('');
    const other = await coffer(['--repo', join(dir, 'no-repository'), 'wal-fetch', '00000002.history', 'pg_wal/RECOVERYHISTORY'], {}, { cwd: pgdata });
    expect(other.status).toBe(255);
  });

  it("at the archive's end: the last segment, marked to keep, is copied and left for recovery's second request; a history file comes from the spool; a failed fetch is not waited for; nothing is ever answered \"not archived\" here", async () => {
    await fakePrefetcher(spool);
    await writeFile(join(spool, '.wanted'), SEG(4));
    await writeFile(join(spool, SEG(4)), 'four');
    await writeFile(join(spool, `.${SEG(4)}.keep`), '');
    for (let i = 0; i < 2; i++) {
      expect((await fetch([SEG(4), 'pg_wal/RECOVERYXLOG'])).status).toBe(0);
      expect(await readFile(join(pgdata, 'pg_wal', 'RECOVERYXLOG'), 'utf8')).toBe('four');
      expect(await readFile(join(spool, SEG(4)), 'utf8')).toBe('four');
    }
    await writeFile(join(spool, '00000002.history'), '1\t0/5000000\tno recovery target specified\n');
    expect((await fetch(['00000002.history', 'pg_wal/RECOVERYHISTORY'])).status).toBe(0);
    expect(await readFile(join(pgdata, 'pg_wal', 'RECOVERYHISTORY'), 'utf8')).toContain('no recovery target');
    // A history file does not move where recovery stands.
    expect(await readFile(join(spool, '.wanted'), 'utf8')).toBe(SEG(4));
    // One the prefetcher failed to fetch: the program fetches it at once, rather than the call waiting.
    await writeFile(join(spool, `.${SEG(5)}.failed`), 'store unreachable');
    const failed = await fetch([SEG(5), 'pg_wal/RECOVERYXLOG']);
    expect(failed.status).toBe(PROGRAM);
    expect(failed.ms).toBeLessThan(2000);
    // Found not archived by the prefetcher: not waited for, and the store answers (the program runs at once).
    await writeFile(join(spool, `.${SEG(6)}.absent`), '');
    await writeFile(join(spool, '.wanted'), SEG(5));
    const absent = await fetch([SEG(6), 'pg_wal/RECOVERYXLOG']);
    expect(absent.status).toBe(PROGRAM);
    expect(absent.ms).toBeLessThan(2000);
    await writeFile(join(spool, '.00000003.history.absent'), '');
    expect((await fetch(['00000003.history', 'pg_wal/RECOVERYHISTORY'])).status).toBe(PROGRAM);
  });
});
