/**
 * Point-in-time recovery is exact: rows with increasing ids are committed one
 * by one, during and after base backups; restores to time, LSN, xid and
 * restore-point targets each return exactly the rows committed up to there,
 * with PostgreSQL's inclusive/exclusive semantics, on two major versions.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { archivingCluster, Cluster, cofferAsPostgres, pgInstalls, restoredIds } from '../support/pg.js';

interface Row {
  id: number;
  xid: string;
  committed: string;
  lsnAfter: string;
}

for (const install of pgInstalls()) {
  describe(`PITR on ${install.label}`, () => {
    let work: { dir: string; cleanup: () => Promise<void> };
    let src: Cluster;
    let repo: string;
    const env = { COFFER_PASSPHRASE: 'pitr passphrase' };
    const rows: Row[] = [];
    let backups: string[] = [];
    let restores = 0;

    const insert = async (n: number) => {
      for (let i = 0; i < n; i++) {
        const id = rows.length + 1;
        const [r] = await src.query<{ xid: string }>(`INSERT INTO t(id) VALUES ($1) RETURNING xmin::text AS xid`, [id]);
        const [c] = await src.query<{ committed: string; lsn: string }>(
          `SELECT to_char(pg_xact_commit_timestamp($1::xid) AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00' AS committed, pg_current_wal_insert_lsn()::text AS lsn`,
          [r!.xid],
        );
        rows.push({ id, xid: r!.xid, committed: c!.committed, lsnAfter: c!.lsn });
      }
    };

    const backup = async () => {
      const r = await cofferAsPostgres(['--repo', repo, 'backup', '--json'], { ...env, ...src.pgEnv });
      expect(r.stderr).toBe('');
      expect(r.status).toBe(0);
      return JSON.parse(r.stdout) as { id: string; postgres: { stopLsn: string; timeline: number } };
    };

    /** Restores with `args`, recovers, and returns the ids present. */
    const restoreIds = (args: string[]): Promise<number[]> => restoredIds(install, repo, join(work.dir, `restore-${restores++}`), args, env.COFFER_PASSPHRASE);
    const upTo = (k: number) => Array.from({ length: k }, (_, i) => i + 1);

    beforeAll(async () => {
      ({ work, repo, cluster: src } = await archivingCluster('coffer-pitr-', install, env.COFFER_PASSPHRASE));
      await src.query('CREATE TABLE t (id int PRIMARY KEY, filler text DEFAULT repeat(md5(random()::text), 20))');
      await src.query('INSERT INTO t(id) SELECT -g FROM generate_series(1, 20000) g');
      await src.query('DELETE FROM t WHERE id < 0');
      await insert(5);
      backups.push((await backup()).id);
      await insert(10);
      // Rows committed while the second backup runs.
      let during = true;
      const writer = (async () => {
        while (during) await insert(1);
      })();
      const second = await backup();
      during = false;
      await writer;
      backups.push(second.id);
      await insert(10);
      await src.query(`SELECT pg_create_restore_point('after_${rows.length}')`);
      await insert(5);
      await src.archiveNow();
    }, 300_000);

    afterAll(async () => {
      await src?.stop();
      await work?.cleanup();
    });

    it('a target time picks the newest backup that ended before it; inclusive keeps the row committed at that time, exclusive does not', async () => {
      const k = 8; // committed between the two backups: only the first backup can reach it
      expect(await restoreIds(['--target-time', rows[k - 1]!.committed])).toEqual(upTo(k));
      expect(await restoreIds(['--target-time', rows[k - 1]!.committed, '--target-exclusive'])).toEqual(upTo(k - 1));
      const late = rows.length - 3;
      expect(await restoreIds(['--target-time', rows[late - 1]!.committed])).toEqual(upTo(late));
    });

    // Every kind of target on the fully tested server; on the others the time target, a restore point, `latest` and
    // `immediate` (what Coffer writes per version is the same for every target kind: its recovery settings).
    if (install.full) {
      it('a target xid: inclusive keeps that transaction, exclusive stops just before it', async () => {
        const k = rows.length - 7;
        expect(await restoreIds(['--target-xid', rows[k - 1]!.xid])).toEqual(upTo(k));
        expect(await restoreIds(['--target-xid', rows[k - 1]!.xid, '--target-exclusive'])).toEqual(upTo(k - 1));
      });

      it('a target LSN taken after a commit returns the rows up to that commit', async () => {
        const k = rows.length - 2;
        expect(await restoreIds(['--target-lsn', rows[k - 1]!.lsnAfter])).toEqual(upTo(k));
        expect(await restoreIds(['--target-lsn', rows[k - 1]!.lsnAfter, '--target-exclusive'])).toEqual(upTo(k));
      });
    }

    it('a restore point name returns the rows committed before it was created; no target replays everything', async () => {
      const k = rows.length - 5;
      expect(await restoreIds([backups[1]!, '--target-name', `after_${k}`])).toEqual(upTo(k));
      expect(await restoreIds(['latest'])).toEqual(upTo(rows.length));
    });

    it('--target immediate stops at the end of the chosen backup', async () => {
      const ids = await restoreIds([backups[0]!, '--target', 'immediate']);
      expect(ids).toEqual(upTo(5));
    });
  });
}

