/**
 * The lease protocol with real processes: a backup stopped (SIGSTOP) past its
 * lease while it holds chunks of an expired backup, expire and gc run and
 * delete those chunks' packs, the backup resumes — and must fail without
 * committing (exit 28), never reference a deleted pack. Run again, it stores
 * what it needs afresh. Exit statuses and the messages users see are part of
 * what is checked.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, readdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { coffer, startCoffer } from './support/cli.js';
import { pseudoRandom, scratch, snapshot } from './support/tree.js';
import { until } from './support/until.js';

let work: { dir: string; cleanup: () => Promise<void> };
let env: Record<string, string>;

beforeAll(async () => {
  work = await scratch('coffer-gc-lease-');
  const keyFile = join(work.dir, 'key');
  await writeFile(keyFile, randomBytes(32).toString('base64'), { mode: 0o600 });
  // Leases of four seconds: gc gives up on a silent holder six seconds after it first saw its record, longer than
  // gc takes to reach its look at who is working even on a slow machine.
  env = { COFFER_KEY_FILE: keyFile, COFFER_LEASE_TTL: '4' };
});
afterAll(async () => work.cleanup());

async function packs(repo: string): Promise<Set<string>> {
  const out = new Set<string>();
  for (const d of await readdir(join(repo, 'data')).catch(() => [])) for (const f of await readdir(join(repo, 'data', d))) out.add(f);
  return out;
}


describe('a backup stopped past its lease while gc deletes what it found in the index', () => {
  it('fails without committing when it resumes; check passes; run again it stores the chunks afresh', async () => {
    const repo = join(work.dir, 'repo');
    const src = join(work.dir, 'src');
    await mkdir(src);
    const run = (...args: string[]) => coffer(['--repo', repo, '-q', ...args], env);
    expect((await run('init', '--pack-size', String(1 << 20))).status).toBe(0);
    await writeFile(join(src, 'keep.bin'), pseudoRandom(1 << 20, 1));
    expect((await run('backup', '--path', src)).status).toBe(0);
    const old = pseudoRandom(4 << 20, 2);
    await writeFile(join(src, 'old.bin'), old);
    const beforeOld = await packs(repo);
    expect((await run('backup', '--path', src)).status).toBe(0);
    const oldPacks = [...(await packs(repo))].filter((p) => !beforeOld.has(p));
    expect(oldPacks.length).toBeGreaterThan(0);
    await rm(join(src, 'old.bin'));
    expect((await run('backup', '--path', src)).status).toBe(0);

    // The writer: old.bin is back (its chunks are in the index, in packs only expiring backups use), and a
    // large new file keeps it busy.
    await writeFile(join(src, 'old.bin'), old);
    await writeFile(join(src, 'big.bin'), pseudoRandom(192 << 20, 3));
    // The three backups before it left their (released) lease records: the writer's is a record not among them.
    const earlier = new Set(await readdir(join(repo, 'locks')).catch(() => [] as string[]));
    const writer = startCoffer(['--repo', repo, '-q', 'backup', '--path', src], env);
    await until(async () => (await readdir(join(repo, 'locks')).catch(() => [] as string[])).some((l) => l.startsWith('backup-') && !earlier.has(l)), "the writer's lease");
    await new Promise((r) => setTimeout(r, 300));
    writer.child.kill('SIGSTOP');
    try {
      const expired = await run('expire', '--keep-min', '1');
      expect(expired.status, expired.stderr).toBe(0);
      expect(expired.stdout).toMatch(/expired 2 backup\(s\)/);
      const gc = await run('gc', '--json');
      expect(gc.status, gc.stderr).toBe(0);
      const report = JSON.parse(gc.stdout) as { deletedPacks: number; waitedFor: string[]; sparedPacks: number };
      expect(report.waitedFor.some((l) => l.startsWith('backup-'))).toBe(true);
      expect(report.sparedPacks).toBe(0);
      const left = await packs(repo);
      for (const p of oldPacks) expect(left.has(p)).toBe(false);
    } finally {
      writer.child.kill('SIGCONT');
    }
    const resumed = await writer.done;
    expect(resumed.status, resumed.stderr).toBe(28);
    expect(resumed.stderr).toMatch(/lease backup-[0-9a-f]{16} lost: .*nothing was committed/);

    const listed = await run('list');
    // The header and the one backup left: the stopped writer committed nothing.
    expect(listed.stdout.trim().split('\n'), listed.stdout).toHaveLength(2);
    const check = await run('check', '--read-data');
    expect(check.status, check.stdout + check.stderr).toBe(0);

    const again = await run('backup', '--path', src, '--json');
    expect(again.status, again.stderr).toBe(0);
    const recheck = await run('check', '--read-data');
    expect(recheck.status, recheck.stdout + recheck.stderr).toBe(0);
    const out = join(work.dir, 'out');
    expect((await run('restore', 'latest', '--to', out)).status).toBe(0);
    expect(await snapshot(out)).toEqual(await snapshot(src));
  });
});
