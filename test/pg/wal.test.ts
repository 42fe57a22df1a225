/**
 * wal-push / wal-fetch semantics on real WAL segments taken from a real
 * cluster: idempotent pushes, refused alterations, kills at random moments,
 * missing segments, and prefetch.
 */
import { createHash } from 'node:crypto';
import { copyFile, mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EXIT_CODES } from '@coffer/cli';
import { coffer, startCoffer } from '../support/cli.js';
import { Cluster, debianInstall, pgScratch } from '../support/pg.js';

const env = { COFFER_PASSPHRASE: 'wal passphrase' };
let work: { dir: string; cleanup: () => Promise<void> };
let repo: string;
let segments: string[] = [];
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

beforeAll(async () => {
  work = await pgScratch('coffer-wal-');
  repo = join(work.dir, 'repo');
  expect((await coffer(['--repo', repo, 'init'], env)).status).toBe(0);
  // Real segments: generate WAL on a throwaway cluster and copy finished segments out.
  const c = await Cluster.create(debianInstall(), work.dir, { checksums: true });
  await c.start();
  for (let i = 0; i < 4; i++) {
    await c.query(`CREATE TABLE IF NOT EXISTS filler AS SELECT g, md5(g::text) FROM generate_series(1, 1) g`);
    await c.query(`INSERT INTO filler SELECT g, md5(g::text) FROM generate_series(1, 40000) g`);
    await c.query('SELECT pg_switch_wal()');
  }
  await c.query('CHECKPOINT');
  const walDir = join(c.data, 'pg_wal');
  const names = (await readdir(walDir)).filter((n) => /^[0-9A-F]{24}$/.test(n)).sort();
  await c.stop();
  await mkdir(join(work.dir, 'pg_wal', 'archive_status'), { recursive: true });
  for (const n of names.slice(0, 3)) await copyFile(join(walDir, n), join(work.dir, 'pg_wal', n));
  segments = names.slice(0, 3);
  expect(segments).toHaveLength(3);
}, 120_000);
afterAll(async () => work?.cleanup());

const seg = (n: string) => join(work.dir, 'pg_wal', n);

describe('wal-push and wal-fetch', () => {
  it('pushing the same segment twice succeeds; fetch returns it byte for byte', async () => {
    const name = segments[0]!;
    expect((await coffer(['--repo', repo, 'wal-push', seg(name)], env)).status).toBe(0);
    expect((await coffer(['--repo', repo, 'wal-push', seg(name)], env)).status).toBe(0);
    const dest = join(work.dir, 'fetched-0');
    const r = await coffer(['--repo', repo, 'wal-fetch', name, dest, '--prefetch', '0'], env);
    expect(r.status).toBe(0);
    expect(sha(await readFile(dest))).toBe(sha(await readFile(seg(name))));
  });

  it('an altered segment under an archived name is refused and the original stays', async () => {
    const name = segments[0]!;
    const original = await readFile(seg(name));
    const altered = Buffer.from(original);
    altered[1000] = altered[1000]! ^ 0xff;
    const dir = join(work.dir, 'altered', 'pg_wal');
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, name), altered);
    const r = await coffer(['--repo', repo, 'wal-push', join(dir, name)], env);
    expect(r.status).toBe(EXIT_CODES.COFFER_OBJECT_CONFLICT);
    expect(r.stderr).toContain(name);
    const dest = join(work.dir, 'fetched-after-conflict');
    expect((await coffer(['--repo', repo, 'wal-fetch', name, dest, '--prefetch', '0'], env)).status).toBe(0);
    expect(sha(await readFile(dest))).toBe(sha(original));
  });

  it('a segment that is not archived makes wal-fetch exit non-zero at once, writing nothing', async () => {
    const dest = join(work.dir, 'never-written');
    const t0 = performance.now();
    const r = await coffer(['--repo', repo, 'wal-fetch', '0000000100000099000000FF', dest], env);
    // 1: PostgreSQL's "not in the archive" (any status up to 125 reads so; Coffer keeps 1 for a true absence).
    expect(r.status).toBe(1);
    expect(performance.now() - t0).toBeLessThan(5000);
    await expect(readFile(dest)).rejects.toThrow();
    const history = await coffer(['--repo', repo, 'wal-fetch', '00000009.history', dest], env);
    expect(history.status).toBe(1);
  });

  it('pushes .ready segments ahead, and wal-fetch prefetches the next ones into the spool', async () => {
    // Mark the other two segments ready, as the archiver would; push only the first.
    for (const n of segments.slice(1)) await writeFile(join(work.dir, 'pg_wal', 'archive_status', `${n}.ready`), '');
    expect((await coffer(['--repo', repo, 'wal-push', seg(segments[0]!), '--ahead', '4'], env)).status).toBe(0);
    // Each file archived ahead has a note; PostgreSQL's call for it is answered from the note without opening the
    // repository (no key given here: the full program would exit 6), once.
    const acks = join(work.dir, 'pg_wal', '.coffer-ack');
    // (Beside the notes, the name of the file called for last, which an archiver would stay near.)
    const notes = async () => (await readdir(acks)).filter((n) => !n.startsWith('archiver-')).sort();
    expect(await notes()).toEqual(segments.slice(1));
    const noKey = { COFFER_PASSPHRASE: 'not the passphrase' };
    expect((await coffer(['--repo', repo, 'wal-push', seg(segments[1]!), '--ahead', '4'], noKey)).status).toBe(0);
    expect(await notes()).toEqual([segments[2]]);
    expect((await coffer(['--repo', repo, 'wal-push', seg(segments[1]!), '--ahead', '4'], noKey)).status).toBe(EXIT_CODES.COFFER_WRONG_KEY);
    // A note never confirms for another repository: the full program runs (and finds none there).
    expect((await coffer(['--repo', join(work.dir, 'elsewhere'), 'wal-push', seg(segments[2]!)], env)).status).toBe(EXIT_CODES.COFFER_NOT_A_REPOSITORY);
    expect(await notes()).toEqual([segments[2]]);
    const restoreDir = join(work.dir, 'restore-pg_wal');
    await mkdir(restoreDir, { recursive: true });
    expect((await coffer(['--repo', repo, 'wal-fetch', segments[0]!, join(restoreDir, 'RECOVERYXLOG'), '--prefetch', '2'], env)).status).toBe(0);
    const spool = join(restoreDir, '.coffer-spool');
    // The prefetch runs detached; wait for both next segments to land.
    const until = Date.now() + 30_000;
    while (Date.now() < until) {
      const have = await readdir(spool).catch(() => [] as string[]);
      if (segments.slice(1).every((n) => have.includes(n))) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    for (const n of segments.slice(1)) expect(sha(await readFile(join(spool, n)))).toBe(sha(await readFile(seg(n))));
    // The next fetch is served from the spool and leaves it — by the entry point, without opening the repository
    // (no key given here: the full program could not read the archive).
    expect((await coffer(['--repo', repo, 'wal-fetch', segments[1]!, join(restoreDir, 'RECOVERYXLOG'), '--prefetch', '0'], noKey)).status).toBe(0);
    expect(sha(await readFile(join(restoreDir, 'RECOVERYXLOG')))).toBe(sha(await readFile(seg(segments[1]!))));
    expect(await readdir(spool)).not.toContain(segments[1]);
  });

  it('a wal-push killed at random moments never leaves a segment that wal-fetch returns partial or wrong', async () => {
    const source = await readFile(seg(segments[2]!));
    const dir = join(work.dir, 'kill', 'pg_wal');
    await mkdir(dir, { recursive: true });
    // Time one push to spread the kills over its whole life.
    await writeFile(join(dir, '000000010000000500000001'), source);
    const t0 = performance.now();
    expect((await coffer(['--repo', repo, 'wal-push', join(dir, '000000010000000500000001')], env)).status).toBe(0);
    const full = performance.now() - t0;
    let killed = 0;
    for (let i = 2; i < 22; i++) {
      const name = `00000001000000050000${i.toString(16).toUpperCase().padStart(4, '0')}`;
      const content = Buffer.from(source);
      content.writeUInt32LE(i, 64); // each segment its own bytes
      await writeFile(join(dir, name), content);
      const run = startCoffer(['--repo', repo, 'wal-push', join(dir, name), '--ahead', '0'], env);
      const timer = setTimeout(() => run.child.kill('SIGKILL'), Math.random() * full * 1.2);
      const r = await run.done;
      clearTimeout(timer);
      if (r.signal === 'SIGKILL') killed++;
      const dest = join(work.dir, 'kill', `out-${name}`);
      const f = await coffer(['--repo', repo, 'wal-fetch', name, dest, '--prefetch', '0'], env);
      if (f.status === 0) expect(sha(await readFile(dest))).toBe(sha(content));
      else expect(f.status).toBe(1);
      // PostgreSQL retries a failed archive_command: the retry must succeed and fetch exactly.
      expect((await coffer(['--repo', repo, 'wal-push', join(dir, name)], env)).status).toBe(0);
      const again = await coffer(['--repo', repo, 'wal-fetch', name, dest, '--prefetch', '0'], env);
      expect(again.status).toBe(0);
      expect(sha(await readFile(dest))).toBe(sha(content));
    }
    expect(killed).toBeGreaterThanOrEqual(5);
    const check = await coffer(['--repo', repo, 'check', '--read-data', '--json'], env);
    expect(check.status).toBe(0);
    expect((JSON.parse(check.stdout) as { walFiles: number }).walFiles).toBeGreaterThanOrEqual(23);
  }, 300_000);
});
