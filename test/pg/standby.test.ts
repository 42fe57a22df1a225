/**
 * Backing up from a standby: build a standby from a backup (`restore
 * --standby`), let it stream from the primary, take the backup on the
 * standby, and restore that backup to a point in time.
 */
import { appendFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { archivingCluster, Cluster, cofferAsPostgres, debianInstall } from '../support/pg.js';

const env = { COFFER_PASSPHRASE: 'standby passphrase' };
const install = debianInstall();
let work: { dir: string; cleanup: () => Promise<void> };
let primary: Cluster;
let standby: Cluster | undefined;
let repo: string;

beforeAll(async () => {
  ({ work, repo, cluster: primary } = await archivingCluster('coffer-standby-', install, env.COFFER_PASSPHRASE));
  await primary.query('CREATE TABLE s (id int PRIMARY KEY)');
  await primary.query('INSERT INTO s SELECT generate_series(1, 100)');
}, 120_000);
afterAll(async () => {
  await standby?.stop();
  await primary?.stop();
  await work?.cleanup();
});

describe('backup from a standby', () => {
  it('restore --standby builds a streaming standby; a backup taken on it restores to a point in time', async () => {
    const first = await cofferAsPostgres(['--repo', repo, 'backup'], { ...env, ...primary.pgEnv });
    expect(first.status).toBe(0);
    const standbyDir = join(work.dir, 'standby');
    const r = await cofferAsPostgres(['--repo', repo, 'restore', 'latest', '--to', standbyDir, '--standby'], env);
    expect(r.status).toBe(0);
    await appendFile(join(standbyDir, 'postgresql.auto.conf'), `primary_conninfo = 'host=127.0.0.1 port=${primary.port} user=postgres'\n`);
    standby = await Cluster.adopt(install, standbyDir, { passphrase: env.COFFER_PASSPHRASE });
    await standby.start({ archive_mode: 'off', hot_standby: 'on' });

    await primary.query('INSERT INTO s SELECT generate_series(101, 200)');
    const [{ lsn }] = (await primary.query<{ lsn: string }>('SELECT pg_current_wal_insert_lsn()::text AS lsn')) as [{ lsn: string }];
    // Wait for the standby to replay past that point.
    const until = Date.now() + 60_000;
    for (;;) {
      const [row] = await standby.query<{ ok: boolean }>(`SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn AS ok`, [lsn]);
      if (row?.ok) break;
      if (Date.now() > until) throw new Error(`standby did not catch up\n${await standby.log()}`);
      await new Promise((res) => setTimeout(res, 100));
    }
    expect((await standby.query<{ n: string }>('SELECT count(*)::text AS n FROM s'))[0]!.n).toBe('200');

    // The standby's last segment is archived by the primary once it switches segments: Coffer asks it to.
    const onStandby = await cofferAsPostgres(['--repo', repo, 'backup', '--json', '--primary-db', `postgresql://postgres@127.0.0.1:${primary.port}/postgres`], { ...env, ...standby.pgEnv });
    expect(onStandby.stderr).toBe('');
    expect(onStandby.status).toBe(0);
    const b = JSON.parse(onStandby.stdout) as { id: string; postgres: { standby: boolean; stopLsn: string } };
    expect(b.postgres.standby).toBe(true);

    await primary.query('INSERT INTO s SELECT generate_series(201, 250)');
    const [{ after }] = (await primary.query<{ after: string }>('SELECT pg_current_wal_insert_lsn()::text AS after')) as [{ after: string }];
    await primary.query('INSERT INTO s SELECT generate_series(251, 300)');
    await primary.archiveNow();

    const to = join(work.dir, 'from-standby');
    const restore = await cofferAsPostgres(['--repo', repo, 'restore', b.id, '--to', to, '--target-lsn', after], env);
    expect(restore.status).toBe(0);
    const c = await Cluster.adopt(install, to, { passphrase: env.COFFER_PASSPHRASE });
    await c.start({ archive_mode: 'off' });
    try {
      await c.waitPromoted();
      expect((await c.query<{ n: string; max: number }>('SELECT count(*)::text AS n, max(id) AS max FROM s'))[0]).toEqual({ n: '250', max: 250 });
    } finally {
      await c.stop();
    }
  }, 300_000);
});
