/**
 * Restores beyond a single PITR: a base backup taken under pgbench load passes
 * amcheck and keeps pgbench's balances; a delta restore over an older
 * restored cluster equals a restore into an empty directory while writing far
 * less; and recovery follows a new timeline created by promoting a restore.
 */
import { join } from 'node:path';
import { spawn } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { archivingCluster, Cluster, cofferAsPostgres, debianInstall, postgresUser, runAsPostgres } from '../support/pg.js';
import { backupWalFiles, FileStore, listWalKeys, LocalKeyProvider, parseLsn, Repository } from '@coffer/engine';
import { snapshot } from '../support/tree.js';
import { until } from '../support/until.js';

const env = { COFFER_PASSPHRASE: 'restore passphrase' };
const install = debianInstall();
let work: { dir: string; cleanup: () => Promise<void> };
let src: Cluster;
let repo: string;
let n = 0;

beforeAll(async () => {
  ({ work, repo, cluster: src } = await archivingCluster('coffer-restore-', install, env.COFFER_PASSPHRASE));
}, 120_000);
afterAll(async () => {
  await src?.stop();
  await work?.cleanup();
});

async function backup(): Promise<string> {
  const r = await cofferAsPostgres(['--repo', repo, 'backup', '--json'], { ...env, ...src.pgEnv });
  expect(r.stderr).toBe('');
  expect(r.status).toBe(0);
  return (JSON.parse(r.stdout) as { id: string }).id;
}

async function restore(args: string[]): Promise<{ to: string; bytesWritten: number; bytes: number }> {
  const to = args.includes('--to') ? args[args.indexOf('--to') + 1]! : join(work.dir, `r${n++}`);
  const r = await cofferAsPostgres(['--repo', repo, 'restore', ...(args.includes('--to') ? [] : ['--to', to]), ...args, '--json'], env);
  expect(r.stderr).toBe('');
  expect(r.status).toBe(0);
  const out = JSON.parse(r.stdout) as { bytesWritten: number; bytes: number };
  return { to, ...out };
}

describe('PostgreSQL restores', () => {
  it('a base backup taken while pgbench runs restores to a cluster where bt_index_check passes on every index and balances match', async () => {
    const pgbench = join(install.bin, 'pgbench');
    const init = await runAsPostgres(pgbench, ['-i', '-s', '5', '-q', '-h', '127.0.0.1', '-p', String(src.port), '-U', 'postgres', 'postgres']);
    expect(init.status).toBe(0);
    const { uid, gid } = postgresUser();
    const load = spawn(pgbench, ['-c', '4', '-j', '2', '-T', '600', '-h', '127.0.0.1', '-p', String(src.port), '-U', 'postgres', 'postgres'], { uid, gid, stdio: 'ignore' });
    await new Promise((r) => setTimeout(r, 1500));
    await backup();
    await new Promise((r) => setTimeout(r, 1000));
    load.kill('SIGINT');
    await new Promise((r) => load.on('close', r));
    // A COMMIT pgbench sent just before it died still commits: wait for its sessions to end before counting.
    await until(async () => (await src.query<{ n: string }>(`SELECT count(*)::text AS n FROM pg_stat_activity WHERE application_name = 'pgbench'`))[0]!.n === '0', 'pgbench sessions to end', 30_000, 50);
    const sums = `SELECT (SELECT sum(abalance) FROM pgbench_accounts)::text AS a, (SELECT sum(bbalance) FROM pgbench_branches)::text AS b,
                         (SELECT sum(tbalance) FROM pgbench_tellers)::text AS t, (SELECT sum(delta) FROM pgbench_history)::text AS h,
                         (SELECT count(*) FROM pgbench_history)::text AS n`;
    const [expected] = await src.query(sums);
    expect(Number(expected!.n)).toBeGreaterThan(100);
    await src.archiveNow();

    const { to } = await restore(['latest']);
    const c = await Cluster.adopt(install, to, { passphrase: env.COFFER_PASSPHRASE });
    await c.start({ archive_mode: 'off' });
    try {
      await c.waitPromoted();
      expect((await c.query(sums))[0]).toEqual(expected);
      const [a] = await c.query(sums);
      expect(a!.a).toBe(a!.h); // pgbench's invariant: every balance change is in the history
      await c.query('CREATE EXTENSION amcheck');
      const indexes = await c.query<{ oid: string; name: string }>(
        `SELECT c.oid::text, c.relname AS name FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am am ON am.oid = c.relam WHERE am.amname = 'btree' AND c.relpersistence = 'p'`,
      );
      expect(indexes.length).toBeGreaterThan(50);
      for (const ix of indexes) await c.query('SELECT bt_index_check($1::regclass, true)', [ix.oid]);
    } finally {
      await c.stop();
    }
  }, 300_000);

  it('--delta over a cluster restored from an older backup equals a restore into an empty directory, writing far less', async () => {
    await src.query('CREATE TABLE IF NOT EXISTS d (id int PRIMARY KEY, v text)');
    await src.query(`INSERT INTO d SELECT g, md5(g::text) FROM generate_series(1, 100000) g`);
    const older = await backup();
    await src.query("UPDATE d SET v = v || '!' WHERE id <= 1000");
    await src.query(`INSERT INTO d SELECT g, md5(g::text) FROM generate_series(100001, 101000) g`);
    const newer = await backup();
    await src.archiveNow();

    const repository = await Repository.open(new FileStore(repo), LocalKeyProvider.fromPassphrase(env.COFFER_PASSPHRASE));
    // The backup returned only once its last segment and its history file were archived, named as PostgreSQL names them.
    const pgInfo = (await repository.resolveBackup(newer)).manifest.postgres!;
    const needed = backupWalFiles(pgInfo.timeline, parseLsn(pgInfo.startLsn), parseLsn(pgInfo.stopLsn), pgInfo.walSegmentSize);
    expect(needed[0]).toBe((await src.query<{ f: string }>('SELECT pg_walfile_name($1::pg_lsn) AS f', [pgInfo.stopLsn]))[0]!.f);
    expect(needed[1]).toMatch(/^[0-9A-F]{24}\.[0-9A-F]{8}\.backup$/);
    const walKeys = await listWalKeys(repository);
    for (const f of needed) expect(walKeys.some((k) => k.endsWith(`/${f}`))).toBe(true);

    // Relation files are cut into whole pages, other files by FastCDC; the update re-stores only the pages it touched.
    expect(repository.config.relationChunker).toEqual({ algorithm: 'fixed', size: 8192, groupBytes: 131072 });
    const manifest = (await repository.resolveBackup(newer)).manifest;
    const table = (await src.query<{ path: string }>(`SELECT pg_relation_filepath('d') AS path`))[0]!.path;
    const files = manifest.entries.filter((e) => e.type === 'file');
    const rel = files.find((e) => e.path === table)!;
    expect(rel.size).toBeGreaterThan(4_000_000);
    expect(rel.chunking).toBe('fixed');
    expect(rel.chunks!.length).toBe(rel.size! / 8192);
    expect(files.find((e) => e.path === 'global/1262')!.chunking).toBe('fixed');
    expect(files.find((e) => e.path === 'global/pg_control')!.chunking).toBeUndefined();
    expect(files.find((e) => e.path === 'PG_VERSION')!.chunking).toBeUndefined();
    expect(files.filter((e) => e.path.startsWith('pg_xact/')).every((e) => e.chunking === undefined)).toBe(true);
    const olderRel = (await repository.resolveBackup(older)).manifest.entries.find((e) => e.path === table)!;
    const kept = new Set(olderRel.chunks);
    const changedPages = rel.chunks!.filter((id) => !kept.has(id)).length;
    // 1,000 updated and 1,000 inserted rows of ~70 bytes: a few dozen pages of the table's ~800, not most of it.
    expect(changedPages).toBeGreaterThan(0);
    expect(changedPages).toBeLessThan(rel.chunks!.length / 4);
    // New pages are stored in groups: several chunk ids of the table share one blob in a pack.
    expect(repository.config.relationChunker!.groupBytes).toBe(128 * 1024);
    const index = await repository.loadIndex();
    const blobs = new Set(olderRel.chunks!.map((id) => index.get(Buffer.from(id, 'hex'))!).map((l) => `${l.pack}:${l.offset}`));
    expect(blobs.size).toBeLessThanOrEqual(Math.ceil(olderRel.chunks!.length / 16) * 2);
    // Pages are listed by page index objects, which a backup does not load: it compares pages with its parent's.
    expect((await repository.listIndexKeys()).some((k) => k.startsWith('index/pages-'))).toBe(true);
    expect((await repository.loadIndex({ pages: false })).size).toBeLessThan(index.size / 4);

    // An older restore that has run: recovered, promoted, stopped.
    const { to: reused } = await restore([older, '--target', 'immediate']);
    const c = await Cluster.adopt(install, reused, { passphrase: env.COFFER_PASSPHRASE });
    await c.start({ archive_mode: 'off' });
    await c.waitPromoted();
    await c.stop();

    const delta = await restore([newer, '--to', reused, '--delta', '--target', 'immediate']);
    const fresh = await restore([newer, '--target', 'immediate']);
    // Recovery files are written at restore time, so their times (and the root's) differ; all else is equal.
    const comparable = async (dir: string) => {
      const snap = await snapshot(dir);
      for (const p of ['.', 'backup_label', 'postgresql.auto.conf', 'recovery.signal']) snap.set(p, { ...snap.get(p)!, mtimeUs: 0n });
      // The restore marker says when each restore ran.
      snap.delete('.coffer-restore');
      return snap;
    };
    expect(await comparable(delta.to)).toEqual(await comparable(fresh.to));
    expect(fresh.bytesWritten).toBeGreaterThan(10_000_000);
    expect(delta.bytesWritten).toBeLessThan(fresh.bytesWritten / 4);

    const d = await Cluster.adopt(install, delta.to, { passphrase: env.COFFER_PASSPHRASE });
    await d.start({ archive_mode: 'off' });
    try {
      await d.waitPromoted();
      expect((await d.query<{ n: string }>('SELECT count(*)::text AS n FROM d'))[0]!.n).toBe('101000');
    } finally {
      await d.stop();
    }
  }, 300_000);

  it('timelines: a restore promoted onto timeline 2 and archived can be recovered to later, from the original backup', async () => {
    await src.query('CREATE TABLE tl (id int PRIMARY KEY)');
    await src.query('INSERT INTO tl SELECT generate_series(1, 10)');
    const base = await backup();
    await src.query('INSERT INTO tl SELECT generate_series(11, 20)');
    const [{ lsn }] = (await src.query<{ lsn: string }>('SELECT pg_current_wal_insert_lsn()::text AS lsn')) as [{ lsn: string }];
    await src.query('INSERT INTO tl SELECT generate_series(21, 30)'); // timeline 1 only
    await src.archiveNow();

    // Branch: recover to row 20, promote (timeline 2), write there, archive into the same repository
    // (--archive: this restore replaces the original, so it keeps archiving).
    const { to: branchDir } = await restore([base, '--target-lsn', lsn, '--archive']);
    const branch = await Cluster.adopt(install, branchDir, { passphrase: env.COFFER_PASSPHRASE });
    await branch.start();
    let tl2Commits: string[] = [];
    try {
      await branch.waitPromoted();
      const [{ tli }] = (await branch.query<{ tli: number }>('SELECT timeline_id AS tli FROM pg_control_checkpoint()')) as [{ tli: number }];
      expect(tli).toBeGreaterThanOrEqual(2);
      for (let id = 1001; id <= 1005; id++) {
        const [r] = await branch.query<{ xid: string }>('INSERT INTO tl VALUES ($1) RETURNING xmin::text AS xid', [id]);
        const [c] = await branch.query<{ at: string }>(`SELECT to_char(pg_xact_commit_timestamp($1::xid) AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00' AS at`, [r!.xid]);
        tl2Commits.push(c!.at);
      }
      await branch.archiveNow();
    } finally {
      await branch.stop();
    }

    // Later: from the original backup to a point on timeline 2.
    const { to } = await restore([base, '--target-time', tl2Commits[2]!, '--target-timeline', 'latest']);
    const c = await Cluster.adopt(install, to, { passphrase: env.COFFER_PASSPHRASE });
    await c.start({ archive_mode: 'off' });
    try {
      await c.waitPromoted();
      const ids = (await c.query<{ id: number }>('SELECT id FROM tl ORDER BY id')).map((r) => r.id);
      expect(ids).toEqual([...Array.from({ length: 20 }, (_, i) => i + 1), 1001, 1002, 1003]);
    } finally {
      await c.stop();
    }
    tl2Commits = [];
  }, 300_000);
});
