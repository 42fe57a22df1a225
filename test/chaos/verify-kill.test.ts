/**
 * `coffer verify` in the crash matrix: killed with SIGKILL at a random moment
 * of its run (restoring, recovering, checking, writing its records), it can
 * clean nothing up itself. After each kill the repository checks whole
 * (`check --read-data`: its verification records and ledger objects are
 * whole or absent), and the next run stops the killed run's sandbox server,
 * removes its sandbox, and passes; no sandbox server is left running and the
 * source cluster is untouched.
 *
 * `sized(3, 40)` trials (each a real recovery): a short run under
 * `npm test`, more under `npm run chaos -- --long`.
 */
import { readdir, readlink } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { VerifyRunReport } from '@coffer/verify';
import { coffer, startCoffer } from '../support/cli.js';
import { archivingCluster, cofferAsPostgres, debianInstall, type Cluster } from '../support/pg.js';
import { addFigures, sized } from './figures.js';

const env = { COFFER_PASSPHRASE: 'verify kill passphrase' };
const TRIALS = sized(3, 40);

let work: { dir: string; cleanup: () => Promise<void> };
let repo: string;
let src: Cluster;

beforeAll(async () => {
  ({ work, repo, cluster: src } = await archivingCluster('coffer-verify-kill-', debianInstall(), env.COFFER_PASSPHRASE));
  await src.query('CREATE TABLE t AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 100000) g');
  const b = await cofferAsPostgres(['--repo', repo, 'backup'], { ...env, ...src.pgEnv });
  if (b.status !== 0) throw new Error(b.stderr);
  await src.query('INSERT INTO t SELECT g, md5(g::text) FROM generate_series(100001, 100500) g');
  await src.archiveNow();
}, 300_000);
afterAll(async () => {
  await src?.stop();
  await work?.cleanup();
});

/** Servers whose data directory lies under `parent`. */
async function serversUnder(parent: string): Promise<number[]> {
  const out: number[] = [];
  for (const name of await readdir('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const cwd = await readlink(`/proc/${name}/cwd`).catch(() => '');
    if (cwd.startsWith(parent + '/')) out.push(Number(name));
  }
  return out;
}

describe('verify in the crash matrix', () => {
  it(`verify killed at random moments leaves the repository whole, and the next run cleans up after it and passes (${TRIALS} trials)`, async () => {
    const parent = join(work.dir, 'sandboxes');
    const args = ['--repo', repo, 'verify', '--others', '0', '--sandbox', parent, '--json', '--smoke', 'SELECT count(*) = 100500 FROM t'];
    const { mkdir } = await import('node:fs/promises');
    await mkdir(parent);
    const t0 = performance.now();
    const first = await coffer(args, env);
    expect(first.status, first.stderr).toBe(0);
    const took = performance.now() - t0;
    let kills = 0;
    for (let i = 0; i < TRIALS; i++) {
      const run = startCoffer(args, env);
      const timer = setTimeout(() => run.child.kill('SIGKILL'), Math.random() * took);
      const r = await run.done;
      clearTimeout(timer);
      if (r.signal === 'SIGKILL') kills++;
      else expect(r.status, r.stderr).toBe(0);
      // Whatever it had written is whole.
      const check = await coffer(['--repo', repo, 'check', '--read-data'], env);
      expect(check.status, `trial ${i}: ${check.stderr}`).toBe(0);
      // The next run removes what the killed one left, and passes.
      const left = (await readdir(parent)).length;
      const next = await coffer(args, env);
      expect(next.status, `trial ${i}: ${next.stderr}`).toBe(0);
      const report = JSON.parse(next.stdout) as VerifyRunReport;
      expect(report.staleSandboxesRemoved).toHaveLength(left);
      expect(await readdir(parent)).toEqual([]);
      expect(await serversUnder(parent)).toEqual([]);
    }
    // The source never noticed.
    const [row] = await src.query<{ n: string }>('SELECT count(*)::text AS n FROM t');
    expect(row!.n).toBe('100500');
    expect(kills).toBeGreaterThan(0);
    await addFigures('crash-matrix', { trials: TRIALS, kills });
  }, 3_600_000);
});
