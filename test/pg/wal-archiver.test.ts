/**
 * archive_command (`coffer wal-push %p`, its defaults) on a real server: the
 * first call starts `coffer wal-archiver`, which archives each segment as
 * PostgreSQL marks it ready, and the calls confirm them. The archiver killed
 * at random moments loses nothing PostgreSQL was told is archived (every
 * segment marked done reads back exact). With the repository unreachable,
 * nothing is dropped: the segments stay in pg_wal marked ready, none is
 * marked done that the repository lacks, and the archive lag the agent
 * exports passes its alert threshold; once the repository answers again
 * the backlog is archived.
 */
import { createHash } from 'node:crypto';
import { mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_THRESHOLDS, WalWatch } from '@coffer/agent';
import { coffer } from '../support/cli.js';
import { archivingCluster, debianInstall, type Cluster } from '../support/pg.js';
import { until } from '../support/until.js';

const PASSPHRASE = 'archiver passphrase';
const env = { COFFER_PASSPHRASE: PASSPHRASE };
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

describe('archive_command with its archiver', () => {
  let work: { dir: string; cleanup: () => Promise<void> };
  let repo: string;
  let cluster: Cluster;
  let walDir: string;

  beforeAll(async () => {
    ({ work, repo, cluster } = await archivingCluster('coffer-archiver-', debianInstall(), PASSPHRASE));
    walDir = join(cluster.data, 'pg_wal');
    await cluster.query('CREATE TABLE t (id serial PRIMARY KEY, pad text)');
  }, 120_000);
  afterAll(async () => {
    await cluster?.stop();
    await work?.cleanup();
  });

  /** Writes some WAL and switches to a new segment: the name of the one completed. */
  const switchSegment = async (rows = 2000) => {
    await cluster.query(`INSERT INTO t (pad) SELECT md5(random()::text) FROM generate_series(1, ${rows})`);
    return (await cluster.query<{ wal: string }>('SELECT pg_walfile_name(pg_switch_wal()) AS wal'))[0]!.wal;
  };
  const archiver = async (): Promise<number | undefined> => {
    const beat = (await readdir(join(walDir, '.coffer-ack')).catch(() => [] as string[])).find((n) => n.startsWith('archiver-') && n.endsWith('.pid'));
    if (!beat) return undefined;
    const pid = Number((await readFile(join(walDir, '.coffer-ack', beat), 'utf8').catch(() => '')).split('\n')[0]);
    return pid > 0 ? pid : undefined;
  };
  const stats = async () => (await cluster.query<{ last: string | null; failed: number }>('SELECT last_archived_wal AS last, failed_count::int AS failed FROM pg_stat_archiver'))[0]!;
  const marked = async (suffix: '.ready' | '.done') => (await readdir(join(walDir, 'archive_status'))).filter((n) => n.endsWith(suffix)).map((n) => n.slice(0, -suffix.length)).filter((n) => /^[0-9A-F]{24}$/.test(n));
  /** Every segment PostgreSQL marked done is in the repository, byte for byte as pg_wal holds it. */
  const doneAreArchived = async () => {
    const done = await marked('.done');
    const out = join(work.dir, 'fetched');
    await mkdir(out, { recursive: true });
    for (const name of done) {
      const r = await coffer(['--repo', repo, 'wal-fetch', name, join(out, name), '--prefetch', '0'], env);
      expect(r.status, `${name} is marked done: ${r.stderr}`).toBe(0);
      // A checkpoint may have recycled it meanwhile (its mark goes with it).
      const local = await readFile(join(walDir, name)).catch(() => undefined);
      if (local) expect(sha(await readFile(join(out, name))), name).toBe(sha(local));
    }
    return done.length;
  };

  it('the archiver the first call starts archives each segment marked ready; killed at random moments, every segment marked done is in the repository', async () => {
    let kills = 0;
    let last = '';
    let rounds = 0;
    const killed = new Set<number>();
    // Segments keep coming; each archiver the calls start is killed somewhere in its work (the next call without a
    // note starts another), until four were.
    while (rounds < 16 || (kills < 4 && rounds < 120)) {
      last = await switchSegment();
      rounds++;
      await new Promise((r) => setTimeout(r, Math.random() * 150));
      const pid = await archiver();
      if (pid && !killed.has(pid)) {
        killed.add(pid);
        try {
          process.kill(pid, 'SIGKILL');
          kills++;
        } catch {
          // It had just stopped.
        }
      }
    }
    await until(async () => ((await stats()).last ?? '') >= last, `PostgreSQL to archive ${last}`, 120_000, 100);
    expect(kills).toBeGreaterThanOrEqual(3);
    expect(await archiver()).toBeDefined();
    expect(await doneAreArchived()).toBeGreaterThanOrEqual(16);
    const check = await coffer(['--repo', repo, 'check', '--read-data', '--json'], env);
    expect(check.status, check.stderr).toBe(0);
  }, 300_000);

  it('with the repository unreachable nothing is dropped: segments stay in pg_wal marked ready, none is marked done that the repository lacks, the archive lag passes its threshold; then the backlog is archived', async () => {
    const watch = new WalWatch({ cluster: 'main', stanza: 'main', repository: repo, connection: `host=127.0.0.1 port=${cluster.port} user=postgres dbname=postgres` });
    try {
      // Packs cannot be written: a file stands where their directory was.
      const packs = join(repo, 'data');
      await rename(packs, `${packs}.away`);
      await writeFile(packs, 'not a directory');
      const t0 = new Date();
      await watch.look(t0);
      const waiting: string[] = [];
      for (let i = 0; i < 6; i++) waiting.push(await switchSegment(500));
      await until(async () => (await stats()).failed >= 3, 'archive_command to fail', 120_000, 200);
      const ready = await marked('.ready');
      for (const name of waiting) {
        expect(ready, `${name} waits in pg_wal`).toContain(name);
        await readFile(join(walDir, name));
      }
      // Marked done: only what was archived before (the repository cannot be read now either; checked below).
      const done = await marked('.done');
      for (const name of waiting) expect(done).not.toContain(name);
      // The agent's view, six minutes on: the lag alert's expression holds (its threshold is the default).
      const later = await watch.look(new Date(t0.getTime() + 6 * 60_000));
      expect(later.ok).toBe(true);
      expect(later.readyFiles).toBeGreaterThanOrEqual(waiting.length);
      expect(later.archiveFailures).toBeGreaterThan(0);
      expect(later.archiveLagSeconds!).toBeGreaterThan(DEFAULT_THRESHOLDS.wal_archive_lag);
      expect(later.pgWalBytes!).toBeGreaterThanOrEqual(waiting.length * 16 * 1024 * 1024);

      await rm(packs);
      await rename(`${packs}.away`, packs);
      await until(async () => ((await stats()).last ?? '') >= waiting.at(-1)!, 'the backlog to be archived', 180_000, 200);
      expect(await doneAreArchived()).toBeGreaterThanOrEqual(waiting.length);
      const after = await watch.look(new Date(t0.getTime() + 7 * 60_000));
      expect(after.readyFiles).toBe(0);
    } finally {
      await watch.close();
    }
  }, 420_000);
});
