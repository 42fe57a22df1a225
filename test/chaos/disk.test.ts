/**
 * Full disks and refused writes, on file systems the test mounts (tmpfs of a
 * set size, remounted larger or read-only): a repository disk that fills
 * during a backup or a WAL push, a restore target that is read-only, a pack
 * that cannot be read. Each fails with its own status and a message naming
 * the path, nothing half-written is reported as done, and once the cause is
 * gone the same command succeeds and everything acknowledged restores
 * exactly.
 */
import { execFile } from 'node:child_process';
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EXIT_CODES, EXIT_INTERNAL } from '@coffer/cli';
import { coffer } from '../support/cli.js';
import { pseudoRandom, scratch, snapshot } from '../support/tree.js';
import { fakeCluster, segment } from '../support/wal.js';
import { addFigures } from './figures.js';

const run = promisify(execFile);
const env = { COFFER_PASSPHRASE: 'disk section' };
const SYS = 7_600_000_000_000_000_003n;
let work: { dir: string; cleanup: () => Promise<void> };
const mounts: string[] = [];

async function tmpfs(name: string, size: string): Promise<string> {
  const dir = join(work.dir, name);
  await mkdir(dir);
  await run('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', dir]);
  mounts.push(dir);
  return dir;
}

beforeAll(async () => {
  work = await scratch('coffer-chaos-disk-');
});
afterAll(async () => {
  for (const m of mounts.reverse()) await run('umount', [m]).catch(() => undefined);
  await work.cleanup();
});

describe('full disks and refused writes', () => {
  it('a full repository disk fails backup and wal-push with exit 23 naming it; after space is freed both succeed and everything restores', async () => {
    let cases = 0;
    const disk = await tmpfs('repo-disk', '3m');
    const repo = join(disk, 'repo');
    expect((await coffer(['--repo', repo, 'init', '--pack-size', String(256 * 1024)], env)).status).toBe(0);
    const small = join(work.dir, 'small');
    await mkdir(small);
    await writeFile(join(small, 'a'), pseudoRandom(400_000, 1));
    const first = await coffer(['--repo', repo, 'backup', '--path', small, '--json'], env);
    expect(first.status).toBe(0);
    const firstId = (JSON.parse(first.stdout) as { id: string }).id;

    // A backup larger than the space left.
    const large = join(work.dir, 'large');
    await mkdir(large);
    await writeFile(join(large, 'b'), pseudoRandom(6 << 20, 2));
    const full = await coffer(['--repo', repo, 'backup', '--path', large, '--json'], env);
    cases++;
    expect(full.status, full.stderr).toBe(EXIT_CODES.COFFER_NO_SPACE);
    expect(full.stderr).toContain(`no space left writing ${repo}/`);
    expect(full.stdout).toBe('');
    const listed = JSON.parse((await coffer(['--repo', repo, 'list', '--json'], env)).stdout) as { id: string }[];
    expect(listed.map((b) => b.id)).toEqual([firstId]);

    // A WAL segment that does not fit either: archive_command fails (PostgreSQL keeps the segment and retries).
    const pgdata = await fakeCluster(join(work.dir, 'pgdata'), SYS);
    const seg = join(pgdata, 'pg_wal', '000000010000000000000001');
    // Incompressible after its header, so that it cannot fit.
    const bytes = segment(SYS, 1, 4 << 20);
    pseudoRandom(bytes.length - 8192, 4).copy(bytes, 8192);
    await writeFile(seg, bytes);
    const filled = await coffer(['--repo', repo, 'wal-push', seg], { ...env, PGDATA: pgdata });
    cases++;
    expect(filled.status, filled.stderr).toBe(EXIT_CODES.COFFER_NO_SPACE);
    const fetchedBefore = await coffer(['--repo', repo, 'wal-fetch', '000000010000000000000001', join(work.dir, 'fetched-early')], { ...env, PGDATA: pgdata });
    expect(fetchedBefore.status).not.toBe(0);

    const check = await coffer(['--repo', repo, 'check', '--read-data', '--json'], env);
    expect(check.status, check.stdout + check.stderr).toBe(0);

    // Space freed: the same commands succeed, and everything acknowledged comes back exactly.
    await run('mount', ['-o', 'remount,size=64m', disk]);
    const again = await coffer(['--repo', repo, 'backup', '--path', large, '--json'], env);
    expect(again.status, again.stderr).toBe(0);
    const pushed = await coffer(['--repo', repo, 'wal-push', seg], { ...env, PGDATA: pgdata });
    expect(pushed.status, pushed.stderr).toBe(0);
    const fetched = join(work.dir, 'fetched');
    expect((await coffer(['--repo', repo, 'wal-fetch', '000000010000000000000001', fetched], { ...env, PGDATA: pgdata })).status).toBe(0);
    expect((await readFile(fetched)).equals(await readFile(seg))).toBe(true);
    expect((await coffer(['--repo', repo, 'check', '--read-data'], env)).status).toBe(0);
    for (const [id, src] of [
      [firstId, small],
      [(JSON.parse(again.stdout) as { id: string }).id, large],
    ] as const) {
      const out = join(work.dir, `out-${id}`);
      expect((await coffer(['--repo', repo, 'restore', id, '--to', out], env)).status).toBe(0);
      expect(await snapshot(out)).toEqual(await snapshot(src));
    }
    await addFigures('disk', { diskCases: cases });
  });

  it('a read-only restore target fails with exit 24 naming it; an unreadable pack fails restore naming the pack, and check reports it', async () => {
    let cases = 0;
    const repo = join(work.dir, 'repo-ro');
    const src = join(work.dir, 'src-ro');
    await mkdir(src);
    await writeFile(join(src, 'a'), pseudoRandom(300_000, 3));
    expect((await coffer(['--repo', repo, 'init'], env)).status).toBe(0);
    const b = await coffer(['--repo', repo, 'backup', '--path', src, '--json'], env);
    const id = (JSON.parse(b.stdout) as { id: string }).id;

    const ro = await tmpfs('read-only', '8m');
    await run('mount', ['-o', 'remount,ro', ro]);
    const refused = await coffer(['--repo', repo, 'restore', id, '--to', join(ro, 'out')], env);
    cases++;
    expect(refused.status, refused.stderr).toBe(EXIT_CODES.COFFER_PERMISSION_DENIED);
    expect(refused.stderr).toContain(ro);
    expect(refused.stderr.trim().split('\n')).toHaveLength(1);

    // A pack that cannot be read (a directory where the file was: even root cannot read it as one).
    const { stdout } = await run('find', [join(repo, 'data'), '-type', 'f']);
    const pack = stdout.trim().split('\n')[0]!;
    await rename(pack, `${pack}.saved`);
    await mkdir(pack);
    try {
      const r = await coffer(['--repo', repo, 'restore', id, '--to', join(work.dir, 'out-ro')], env);
      cases++;
      expect(r.status, r.stderr).not.toBe(0);
      expect(r.status).not.toBe(EXIT_INTERNAL);
      expect(r.stderr).toContain(pack.slice(pack.lastIndexOf('/') + 1));
      expect(r.stderr).not.toContain('unexpected error');
      const c = await coffer(['--repo', repo, 'check', '--read-data', '--json'], env);
      cases++;
      expect(c.status).not.toBe(0);
      expect(c.stderr).not.toContain('unexpected error');
    } finally {
      await rm(pack, { recursive: true });
      await rename(`${pack}.saved`, pack);
    }
    const out = join(work.dir, 'out-ro-2');
    expect((await coffer(['--repo', repo, 'restore', id, '--to', out], env)).status).toBe(0);
    expect(await snapshot(out)).toEqual(await snapshot(src));
    await addFigures('disk', { diskCases: cases });
  });
});
