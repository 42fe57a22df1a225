/**
 * `coffer gc` runs itself once more with glibc's mmap threshold fixed
 * and V8's young generation small (packages/cli/src/malloc-tuning.ts). The run a caller started must still
 * behave as the command: its exit status is the command's, a signal sent to
 * it reaches the collection, and killed outright it leaves no collection
 * running behind it.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { coffer, startCoffer } from './support/cli.js';
import { scratch } from './support/tree.js';
import { until } from './support/until.js';

let work: { dir: string; cleanup: () => Promise<void> };
let env: Record<string, string>;
let repo: string;

beforeAll(async () => {
  work = await scratch('coffer-malloc-');
  const keyFile = join(work.dir, 'key');
  await writeFile(keyFile, randomBytes(32).toString('base64'), { mode: 0o600 });
  env = { COFFER_KEY_FILE: keyFile };
  repo = join(work.dir, 'repo');
  expect((await coffer(['--repo', repo, 'init'], env)).status).toBe(0);
  // Another collection's lease, unreadable and so taken as alive: a gc started now waits for it (up to --max-wait).
  await mkdir(join(repo, 'locks', 'gc-0123456789abcdef'), { recursive: true });
  await writeFile(join(repo, 'locks', 'gc-0123456789abcdef', '00000001'), 'not a lease record');
});
afterAll(async () => work.cleanup());

/** Pids of processes started as the tuned run of `parent`. */
async function tunedRunsOf(parent: number): Promise<number[]> {
  const out: number[] = [];
  for (const name of await readdir('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const environ = await readFile(`/proc/${name}/environ`, 'latin1').catch(() => '');
    if (environ.split('\0').includes(`COFFER_MALLOC_TUNED=${parent}`)) out.push(Number(name));
  }
  return out;
}


describe('coffer gc in its tuned run', () => {
  it('the tuned run has the threshold set; the exit status is the collection’s', async () => {
    const r = await coffer(['--repo', join(work.dir, 'no-repo'), 'gc'], env);
    expect(r.status).toBe(4);
    expect(r.stderr).toMatch(/not a Coffer repository/);
    // check runs the same way, and its status comes through too.
    const c = await coffer(['--repo', join(work.dir, 'no-repo'), 'check'], env);
    expect(c.status).toBe(4);
    expect(c.stderr).toMatch(/not a Coffer repository/);
    const { child, done } = startCoffer(['--repo', repo, 'gc', '--max-wait', '60'], env);
    await until(async () => (await tunedRunsOf(child.pid!)).length === 1, 'the tuned run', 20_000, 20);
    const [pid] = await tunedRunsOf(child.pid!);
    const environ = (await readFile(`/proc/${pid}/environ`, 'latin1')).split('\0');
    expect(environ).toContain('MALLOC_MMAP_THRESHOLD_=131072');
    // Its young generation is small, so that the many large buffers it reads go back sooner.
    expect((await readFile(`/proc/${pid}/cmdline`, 'latin1')).split('\0')).toContain('--max-semi-space-size=1');
    child.kill('SIGTERM');
    const ended = await done;
    expect(ended.signal).toBe('SIGTERM');
    await until(async () => (await tunedRunsOf(child.pid!)).length === 0, 'the tuned run to end', 20_000, 20);
  });

  it('killed outright, the command leaves no collection running', async () => {
    const { child, done } = startCoffer(['--repo', repo, 'gc', '--max-wait', '60'], env);
    await until(async () => (await tunedRunsOf(child.pid!)).length === 1, 'the tuned run', 20_000, 20);
    child.kill('SIGKILL');
    expect((await done).signal).toBe('SIGKILL');
    await until(async () => (await tunedRunsOf(child.pid!)).length === 0, 'the tuned run to stop', 20_000, 20);
  });
});
