/**
 * Retention on a real cluster with a short PITR window: three backups, WAL
 * archived by coffer wal-push, the oldest backup marked keep. `expire` with a
 * window that starts between the second and third backup keeps the second as
 * the window's anchor and removes the WAL between the first and the second;
 * `gc` frees it. Recovery to points inside the window succeeds with exactly
 * the rows committed up to there; a point just before the window — reachable
 * only through the removed WAL — is refused before anything is written.
 */
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { archivingCluster, Cluster, cofferAsPostgres, pgInstalls, restoredIds } from '../support/pg.js';

const install = pgInstalls()[0]!;

describe(`retention and the PITR window on ${install.label}`, () => {
  let work: { dir: string; cleanup: () => Promise<void> };
  let src: Cluster;
  let repo: string;
  const env = { COFFER_PASSPHRASE: 'retention passphrase' };
  let next = 1;
  const committed: Record<number, string> = {};
  const backups: { id: string; stopTime: string }[] = [];
  let restores = 0;

  /** Commits rows one by one; remembers the server's clock just after each. */
  const insert = async (n: number) => {
    for (let i = 0; i < n; i++, next++) {
      await src.query('INSERT INTO t(id) VALUES ($1)', [next]);
      const [c] = await src.query<{ at: string }>(`SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00' AS at`);
      committed[next] = c!.at;
    }
  };
  const run = (args: string[]) => cofferAsPostgres(['--repo', repo, ...args], env);
  const backup = async () => {
    const r = await cofferAsPostgres(['--repo', repo, 'backup', '--json'], { ...env, ...src.pgEnv });
    expect(r.status, r.stderr).toBe(0);
    const b = JSON.parse(r.stdout) as { id: string; postgres: { stopTime: string } };
    backups.push({ id: b.id, stopTime: b.postgres.stopTime });
  };
  /** Restores with `args`, recovers, and returns the ids present. */
  const restoreIds = (args: string[]): Promise<number[]> => restoredIds(install, repo, join(work.dir, `restore-${restores++}`), args, env.COFFER_PASSPHRASE);
  const upTo = (k: number) => Array.from({ length: k }, (_, i) => i + 1);

  beforeAll(async () => {
    ({ work, repo, cluster: src } = await archivingCluster('coffer-retention-', install, env.COFFER_PASSPHRASE));
    await src.query('CREATE TABLE t (id int PRIMARY KEY)');
    await insert(5);
    await backup(); // 1: rows 1–5
    await insert(5); // rows 6–10, in the first backup's last segment
    await src.archiveNow();
    await insert(1); // row 11, in a segment of its own: before the window, needed by no kept backup
    await src.archiveNow();
    await backup(); // 2: the window's anchor
    await insert(4); // rows 12–15
    await src.archiveNow();
    await backup(); // 3
    await insert(5); // rows 16–20
    await src.query(`SELECT pg_create_restore_point('end')`);
    await src.archiveNow();
    expect((await run(['keep', backups[0]!.id, '--note', 'audit'])).status).toBe(0);
  }, 300_000);
  afterAll(async () => {
    await src?.stop();
    await work?.cleanup();
  });

  it('expire keeps the marked backup, the anchor and the newest, removes the WAL before the window, and gc frees it', async () => {
    // The window starts halfway between the second and third backups.
    const now = Date.parse(backups[2]!.stopTime) + 1000;
    const start = (Date.parse(backups[1]!.stopTime) + Date.parse(backups[2]!.stopTime)) / 2;
    const windowDays = (now - start) / 86_400_000;
    const r = await run(['expire', '--keep-min', '1', '--pitr-window', String(windowDays), '--now', new Date(now).toISOString(), '--json']);
    expect(r.status, r.stderr).toBe(0);
    const report = JSON.parse(r.stdout) as { backups: { id: string; keep: boolean; reasons: string[] }[]; wal: { keep: boolean; files: number; first: string; reason: string }[]; removedWalFiles: number };
    expect(report.backups.map((b) => [b.id, b.keep])).toEqual(backups.map((b) => [b.id, true]));
    expect(report.backups[0]!.reasons).toContain('marked keep');
    expect(report.backups[1]!.reasons.join()).toMatch(/PITR window/);
    expect(report.removedWalFiles).toBeGreaterThanOrEqual(1);
    expect(report.wal.filter((w) => !w.keep).every((w) => w.reason.startsWith('before the PITR window'))).toBe(true);
    const gc = await run(['gc', '--json']);
    expect(gc.status, gc.stderr).toBe(0);
    expect((JSON.parse(gc.stdout) as { deletedPacks: number }).deletedPacks).toBeGreaterThanOrEqual(1);
    const check = await run(['check', '--read-data']);
    expect(check.status, check.stdout + check.stderr).toBe(0);
    // info shows the hole expire left in the WAL, and that recovery reaches any point from the anchor's end on.
    const info = await run(['info', '--json', '--reclaimable']);
    expect(info.status, info.stderr).toBe(0);
    const i = JSON.parse(info.stdout) as { wal: { gaps: string[] }[]; lineages: { lineage: string; recoverableFrom?: string }[]; reclaimableBytes: number; leases: unknown[] };
    expect(i.wal.flatMap((w) => w.gaps).length).toBe(1);
    expect(i.lineages.find((l) => l.lineage === 'postgres:main')!.recoverableFrom).toBe(backups[1]!.stopTime);
    expect(i.reclaimableBytes).toBe(0);
    expect(i.leases).toEqual([]);
  });

  it('recovers to points inside the window exactly', async () => {
    expect(await restoreIds(['--target-time', committed[15]!])).toEqual(upTo(15));
    expect(await restoreIds(['--target-name', 'end'])).toEqual(upTo(20));
  }, 300_000);

  it('refuses a point just before the window, naming why, and writes nothing', async () => {
    const to = join(work.dir, 'refused');
    const r = await run(['restore', '--to', to, '--target-time', committed[10]!]);
    expect(r.status).toBe(7);
    expect(r.stderr).toMatch(/outside the PITR window/);
    expect(r.stderr).toContain(backups[0]!.id);
    expect(await readdir(to).catch(() => [])).toEqual([]);
    // The marked backup itself still restores, to its own end.
    expect(await restoreIds([backups[0]!.id, '--target', 'immediate'])).toEqual(upTo(5));
  }, 300_000);
});
