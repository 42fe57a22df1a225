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
import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { scratch } from './support/tree.js';
import { Workbench, type Op } from './support/workbench.js';

const RUNS = Number(process.env.INTERLEAVE_RUNS ?? 2);
const STEPS = 8;

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
        const bench = await Workbench.create(dir, keyFile, seed);
        for (const step of plan) {
          const running = await Promise.all(step.ops.map((op) => bench.start(op, step.keepMin)));
          const timers = running.map((r, i) => (step.kill[i] != null ? setTimeout(r.kill, step.kill[i]!) : undefined));
          const results = await Promise.all(running.map((r) => r.done));
          timers.forEach((t) => clearTimeout(t));
          for (let i = 0; i < running.length; i++) {
            const r = results[i]!;
            // Unless killed, every command succeeds: overlapping work never fails another.
            if (r.signal !== 'SIGKILL') expect(r.status, `${step.ops[i]}: ${r.stderr}`).toBe(0);
            await running[i]!.after(r);
          }
          await bench.verify(step.ops.join(' ∥ '));
        }
        await rm(dir, { recursive: true, force: true, maxRetries: 5, retryDelay: 200 });
      }),
      { numRuns: RUNS },
    );
  }, 900_000);
});
