/**
 * Backups, WAL archiving, expire, gc, mirror and restore as separate `coffer`
 * processes in random orders, two at a time where the plan overlaps them,
 * some killed (SIGKILL) at random moments. After every step: `check
 * --read-data` passes, every backup retention keeps restores exactly as it
 * was taken, every archived WAL segment comes back byte for byte, and a
 * mirror that finished checks on its own. Leases of one second keep the
 * waits for killed writers short.
 *
 * A short run here (`INTERLEAVE_RUNS`, default 2 plans of 8 steps); the
 * reliability suite runs long ones.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { coffer, startCoffer, type RunResult } from './support/cli.js';
import { pseudoRandom, scratch, snapshot, type SnapshotEntry } from './support/tree.js';
import { fakeCluster, segment, segmentName } from './support/wal.js';

const RUNS = Number(process.env.INTERLEAVE_RUNS ?? 2);
const STEPS = 8;
const SYSID = 7_500_000_000_000_000_001n;
const SEG = 1 << 20;

type Op = 'backup' | 'wal-push' | 'expire' | 'gc' | 'mirror' | 'restore';
interface Step {
  ops: Op[];
  /** Per op: kill it after this many ms, or never. */
  kill: (number | null)[];
  keepMin: number;
}

const stepArb: fc.Arbitrary<Step> = fc
  .record({
    first: fc.constantFrom<Op>('backup', 'backup', 'wal-push', 'expire', 'gc', 'mirror', 'restore'),
    second: fc.option(fc.constantFrom<Op>('backup', 'wal-push', 'gc', 'expire', 'restore'), { nil: undefined }),
    kill: fc.array(fc.option(fc.integer({ min: 50, max: 900 }), { nil: null, freq: 3 }), { minLength: 2, maxLength: 2 }),
    keepMin: fc.integer({ min: 1, max: 3 }),
  })
  .map(({ first, second, kill, keepMin }) => ({ ops: second ? [first, second] : [first], kill: second ? kill : [kill[0]!], keepMin }));

let work: { dir: string; cleanup: () => Promise<void> };
let keyFile: string;

beforeAll(async () => {
  work = await scratch('coffer-interleave-');
  keyFile = join(work.dir, 'key');
  await writeFile(keyFile, randomBytes(32).toString('base64'), { mode: 0o600 });
});
afterAll(async () => work.cleanup());

describe('writers, expire, gc, mirror and restore interleaved, with kills', () => {
  it(`keep every kept backup and archived segment whole (${RUNS} plans of ${STEPS} steps)`, async () => {
    let round = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(stepArb, { minLength: STEPS, maxLength: STEPS }), fc.integer({ min: 1, max: 2 ** 30 }), async (plan, seed) => {
        const dir = join(work.dir, `run-${round++}`);
        await mkdir(dir);
        const repo = join(dir, 'repo');
        const mirrorRepo = join(dir, 'mirror');
        const src = join(dir, 'src');
        await mkdir(src);
        const pgdata = await fakeCluster(join(dir, 'pgdata'), SYSID);
        const env = { COFFER_KEY_FILE: keyFile, COFFER_LEASE_TTL: '1' };
        const run = (args: string[]) => startCoffer(['--repo', repo, '-q', ...args], env);
        expect((await coffer(['--repo', repo, 'init', '--pack-size', String(256 * 1024)], env)).status).toBe(0);

        /** Backups committed, oldest first, with the source as it was when each started. */
        const backups: { id: string; snap: Map<string, SnapshotEntry> }[] = [];
        const segments: number[] = [];
        let nextSegment = 1;
        let version = 0;
        let restores = 0;

        const start = async (op: Op, keepMin: number): Promise<{ done: Promise<RunResult>; kill: () => void; after: (r: RunResult) => Promise<void> }> => {
          if (op === 'backup') {
            // Change part of the source: one file rewritten, one added, one kept as it is.
            version++;
            await writeFile(join(src, 'stable.bin'), pseudoRandom(200_000, seed));
            await writeFile(join(src, 'changing.bin'), pseudoRandom(150_000, seed + version));
            await writeFile(join(src, `v${version}.txt`), `version ${version}\n`.repeat(500));
            await rm(join(src, `v${version - 2}.txt`), { force: true });
            const snap = await snapshot(src);
            const p = run(['backup', '--path', src, '--json']);
            return {
              done: p.done,
              kill: () => p.child.kill('SIGKILL'),
              after: async (r) => {
                if (r.status === 0) backups.push({ id: (JSON.parse(r.stdout) as { id: string }).id, snap });
              },
            };
          }
          if (op === 'wal-push') {
            const n = nextSegment++;
            const name = segmentName(n);
            await writeFile(join(pgdata, 'pg_wal', name), segment(SYSID, n, SEG));
            const p = run(['wal-push', '--ahead', '0', join(pgdata, 'pg_wal', name)]);
            return { done: p.done, kill: () => p.child.kill('SIGKILL'), after: async (r) => void (r.status === 0 && segments.push(n)) };
          }
          if (op === 'expire') {
            const p = run(['expire', '--keep-min', String(keepMin), '--json']);
            return {
              done: p.done,
              kill: () => p.child.kill('SIGKILL'),
              after: async (r) => {
                let gone: Set<string>;
                if (r.status === 0) {
                  const report = JSON.parse(r.stdout) as { backups: { id: string; keep: boolean }[] };
                  gone = new Set(report.backups.filter((b) => !b.keep).map((b) => b.id));
                } else {
                  // Killed part-way: what it removed is what the rule let go; the newest keepMin must all be there.
                  const listed = new Set((JSON.parse((await coffer(['--repo', repo, 'list', '--json'], env)).stdout) as { id: string }[]).map((b) => b.id));
                  gone = new Set(backups.slice(0, Math.max(0, backups.length - keepMin)).filter((b) => !listed.has(b.id)).map((b) => b.id));
                }
                for (let i = backups.length - 1; i >= 0; i--) if (gone.has(backups[i]!.id)) backups.splice(i, 1);
              },
            };
          }
          if (op === 'gc') {
            const p = run(['gc', '--json']);
            return { done: p.done, kill: () => p.child.kill('SIGKILL'), after: async () => undefined };
          }
          if (op === 'mirror') {
            const p = run(['mirror', '--to', mirrorRepo]);
            return {
              done: p.done,
              kill: () => p.child.kill('SIGKILL'),
              after: async (r) => {
                // A finished mirror is a repository of its own that checks.
                if (r.status === 0) {
                  const c = await coffer(['--repo', mirrorRepo, '-q', 'check', '--read-data'], env);
                  expect(c.status, `mirror check: ${c.stdout}${c.stderr}`).toBe(0);
                }
              },
            };
          }
          // restore: the newest committed backup, into a fresh directory; compared when it finishes.
          const b = backups[backups.length - 1];
          if (!b) return { done: Promise.resolve({ status: 0, signal: null, stdout: '', stderr: '' }), kill: () => undefined, after: async () => undefined };
          const to = join(dir, `restore-${restores++}`);
          const p = run(['restore', b.id, '--to', to]);
          return {
            done: p.done,
            kill: () => p.child.kill('SIGKILL'),
            after: async (r) => {
              if (r.status === 0) expect(await snapshot(to)).toEqual(b.snap);
              await rm(to, { recursive: true, force: true });
            },
          };
        };

        for (const step of plan) {
          const running = await Promise.all(step.ops.map((op) => start(op, step.keepMin)));
          const timers = running.map((r, i) => (step.kill[i] != null ? setTimeout(r.kill, step.kill[i]!) : undefined));
          const results = await Promise.all(running.map((r) => r.done));
          timers.forEach((t) => clearTimeout(t));
          for (let i = 0; i < running.length; i++) {
            const r = results[i]!;
            // Unless killed, every command succeeds: overlapping work never fails another.
            if (r.signal !== 'SIGKILL') expect(r.status, `${step.ops[i]}: ${r.stderr}`).toBe(0);
            await running[i]!.after(r);
          }

          const check = await coffer(['--repo', repo, '-q', 'check', '--read-data'], env);
          expect(check.status, `after ${step.ops.join(' ∥ ')}: ${check.stdout}${check.stderr}`).toBe(0);
          // Every backup retention keeps is listed, and the oldest and newest of them restore exactly.
          const listed = JSON.parse((await coffer(['--repo', repo, 'list', '--json'], env)).stdout) as { id: string }[];
          const ids = new Set(listed.map((b) => b.id));
          for (const b of backups) expect(ids.has(b.id), `backup ${b.id} is kept`).toBe(true);
          for (const b of new Set([backups[0], backups[backups.length - 1]])) {
            if (!b) continue;
            const to = join(dir, `verify-${restores++}`);
            const r = await coffer(['--repo', repo, '-q', 'restore', b.id, '--to', to], env);
            expect(r.status, r.stderr).toBe(0);
            expect(await snapshot(to)).toEqual(b.snap);
            await rm(to, { recursive: true, force: true });
          }
          // Every archived segment (WAL of a system no backup belongs to is never expired) comes back whole.
          for (const n of segments.slice(-2)) {
            const dest = join(dir, 'fetched');
            const r = await coffer(['--repo', repo, '-q', 'wal-fetch', '--system-id', SYSID.toString(), segmentName(n), dest], env);
            expect(r.status, r.stderr).toBe(0);
            expect((await readFile(dest)).equals(segment(SYSID, n, SEG))).toBe(true);
            await rm(dest);
          }
        }
        await rm(dir, { recursive: true, force: true });
      }),
      { numRuns: RUNS },
    );
  }, 900_000);
});
