/**
 * archive_command called as PostgreSQL's archiver calls it — one file after
 * another, oldest first, each marked done once it succeeds — for segments
 * and a backup-label file: the first call starts the archiver, and every
 * call, the backup-label file's included, is confirmed from the archiver's
 * note. None falls through to the full program, which would archive ahead
 * beside the archiver and store the same files twice (the benchmark's oltp
 * WAL stored 27% more per day that way).
 */
import { randomBytes } from 'node:crypto';
import { readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { coffer } from './support/cli.js';
import { stopArchivers } from './support/pg.js';
import { scratch } from './support/tree.js';
import { fakeCluster, segment, segmentName } from './support/wal.js';

const SYS = 7_300_000_000_000_004_242n;
const env = { COFFER_PASSPHRASE: 'wal push calls' };

describe('archive_command called file after file', () => {
  let work: { dir: string; cleanup: () => Promise<void> };
  let pgdata: string;
  let repo: string;
  beforeAll(async () => {
    work = await scratch('coffer-wal-calls-');
    repo = join(work.dir, 'repo');
    pgdata = await fakeCluster(join(work.dir, 'pg'), SYS);
    expect((await coffer(['--repo', repo, 'init'], env)).status).toBe(0);
  }, 60_000);
  afterAll(async () => {
    await stopArchivers(pgdata).catch(() => undefined);
    await work?.cleanup();
  });

  it('confirms every call from a note, the backup-label file too, and stores each file once', async () => {
    const files: string[] = [];
    for (let n = 1; n <= 8; n++) {
      const seg = segment(SYS, n);
      // Incompressible, so that a file stored twice shows in the repository's size.
      randomBytes(seg.length - 8192).copy(seg, 8192);
      await writeFile(join(pgdata, 'pg_wal', segmentName(n)), seg);
      files.push(segmentName(n));
      if (n === 3) {
        const label = `${segmentName(3)}.00000028.backup`;
        await writeFile(join(pgdata, 'pg_wal', label), `START WAL LOCATION: 0/3000028 (file ${segmentName(3)})\nSTOP WAL LOCATION: 0/3000100 (file ${segmentName(3)})\n`);
        files.push(label);
      }
    }
    for (const f of files) await writeFile(join(pgdata, 'pg_wal', 'archive_status', `${f}.ready`), '');
    for (const f of files) {
      const r = await coffer(['--repo', repo, 'wal-push', `pg_wal/${f}`], env, { cwd: pgdata });
      expect(r.status, `${f}: ${r.stderr}`).toBe(0);
      await rename(join(pgdata, 'pg_wal', 'archive_status', `${f}.ready`), join(pgdata, 'pg_wal', 'archive_status', `${f}.done`));
    }
    await stopArchivers(pgdata);

    // A call that ran the full program leaves an audit record of its own; the archiver leaves one when it stops.
    const audit = JSON.parse((await coffer(['--repo', repo, 'audit', '--json'], env)).stdout) as { records: { command: string; details: Record<string, unknown> }[] };
    expect(audit.records.filter((r) => r.command === 'wal-push').map((r) => r.details.segment)).toEqual([]);
    expect(audit.records.filter((r) => r.command === 'wal-archiver').reduce((a, r) => a + Number(r.details.archived), 0)).toBe(files.length);
    const info = await coffer(['--repo', repo, 'info', '--reclaimable'], env);
    expect(info.stdout).toMatch(/reclaimable by gc now: 0 B/);
    for (const f of files) {
      const to = join(work.dir, `fetched-${f}`);
      expect((await coffer(['--repo', repo, 'wal-fetch', f, to, '--prefetch', '0'], env, { cwd: pgdata })).status).toBe(0);
      expect((await readFile(to)).equals(await readFile(join(pgdata, 'pg_wal', f)))).toBe(true);
    }
  }, 120_000);
});
