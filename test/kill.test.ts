/**
 * Kills `coffer backup` with SIGKILL at random moments, many times, and checks
 * that the repository stays consistent: `check` passes and every backup that
 * completed earlier restores exactly.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { coffer, startCoffer } from './support/cli.js';
import { pseudoRandom, scratch, snapshot, writeTree, type NodeSpec, type SnapshotEntry } from './support/tree.js';
import { rm } from 'node:fs/promises';

let work: { dir: string; cleanup: () => Promise<void> };
const env = { COFFER_PASSPHRASE: 'kill test' };
const KILLS = 14;

beforeAll(async () => {
  work = await scratch('coffer-kill-');
});
afterAll(async () => work.cleanup());

/** A ~48 MiB tree whose content depends on `round` (most of it new each round). */
function tree(round: number): NodeSpec[] {
  const files: NodeSpec[] = [];
  for (let i = 0; i < 12; i++) {
    // Files 0–2 keep their content across rounds (dedup); the rest change.
    const seed = i < 3 ? i + 1 : round * 100 + i;
    files.push({ kind: 'file', name: `f${String(i).padStart(2, '0')}.bin`, content: pseudoRandom(4 << 20, seed), mode: 0o644, mtimeMs: 1_600_000_000_000 + round });
  }
  files.push({ kind: 'file', name: 'text.log', content: Buffer.from(`round ${round}\n`.repeat(50_000)), mode: 0o600, mtimeMs: 1_600_000_000_000 });
  return files;
}

describe('a backup killed at any moment', () => {
  it(`leaves a repository that check passes and that restores every earlier backup exactly (${KILLS} kills)`, async () => {
    const repo = join(work.dir, 'repo');
    expect((await coffer(['--repo', repo, 'init', '--pack-size', String(1 << 20)], env)).status).toBe(0);
    const completed: Array<{ id: string; snap: Map<string, SnapshotEntry> }> = [];

    const backupRound = async (round: number, killAfterMs?: number) => {
      const src = join(work.dir, `src-${round}`);
      await writeTree(src, tree(round));
      const snap = await snapshot(src);
      const started = performance.now();
      const run = startCoffer(['--repo', repo, 'backup', '--path', src, '--json', '--parent', 'none', ...(round % 2 ? ['--workers', '2'] : [])], env);
      let timer: NodeJS.Timeout | undefined;
      if (killAfterMs !== undefined) timer = setTimeout(() => run.child.kill('SIGKILL'), killAfterMs);
      const r = await run.done;
      clearTimeout(timer);
      const ms = performance.now() - started;
      if (r.status === 0) completed.push({ id: (JSON.parse(r.stdout) as { id: string }).id, snap });
      else expect(r.signal).toBe('SIGKILL');
      await rm(src, { recursive: true });
      return { ms, killed: r.status !== 0 };
    };

    const first = await backupRound(0);
    expect(first.killed).toBe(false);
    let killed = 0;
    // The quickest whole round so far: the first one starts cold, and kills timed by it alone miss faster rounds.
    let quickest = first.ms;
    for (let round = 1; round <= KILLS; round++) {
      // Spread kills over start-up, chunking, pack uploads, index and manifest writes.
      const delay = Math.random() * quickest * 1.1;
      const r = await backupRound(round, delay);
      if (r.killed) killed++;
      else quickest = Math.min(quickest, r.ms);
      const check = await coffer(['--repo', repo, 'check', ...(round % 4 === 0 ? ['--read-data'] : []), '--json'], env);
      expect(check.stderr).toBe('');
      expect(check.status).toBe(0);
    }
    expect(killed).toBeGreaterThanOrEqual(KILLS / 2);

    for (const [i, b] of completed.entries()) {
      const out = join(work.dir, `out-${i}`);
      const r = await coffer(['--repo', repo, 'restore', b.id, '--to', out], env);
      expect(r.stderr).toBe('');
      expect(r.status).toBe(0);
      expect(await snapshot(out)).toEqual(b.snap);
      await rm(out, { recursive: true });
    }
    const full = await coffer(['--repo', repo, 'check', '--read-data'], env);
    expect(full.status).toBe(0);
  }, 600_000);
});
