/** Tablespaces are read through their pg_tblspc links and restored to their location or a mapped one, linked again. */
import { chown, mkdir, readdir, readlink } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { EXIT_CODES } from '@coffer/cli';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { VerifyRunReport } from '@coffer/verify';
import { coffer } from '../support/cli.js';
import { archivingCluster, Cluster, cofferAsPostgres, debianInstall, postgresUser, type Cluster as ClusterT } from '../support/pg.js';

const env = { COFFER_PASSPHRASE: 'tablespace passphrase' };
const install = debianInstall();
let work: { dir: string; cleanup: () => Promise<void> };
let repo: string;
let src: ClusterT;

beforeAll(async () => {
  ({ work, repo, cluster: src } = await archivingCluster('coffer-tblspc-', install, env.COFFER_PASSPHRASE));
}, 120_000);
afterAll(async () => {
  await src?.stop();
  await work?.cleanup();
});

describe('tablespaces', () => {
  it('a table in a tablespace outside the data directory is backed up and restored with its rows', async () => {
    const location = join(work.dir, 'tblspc');
    await mkdir(location);
    const { uid, gid } = postgresUser();
    await chown(location, uid, gid);
    await src.query(`CREATE TABLESPACE extra LOCATION '${location}'`);
    await src.query('CREATE TABLE far (id int PRIMARY KEY, v text) TABLESPACE extra');
    await src.query(`INSERT INTO far SELECT g, md5(g::text) FROM generate_series(1, 20000) g`);
    const b = await cofferAsPostgres(['--repo', repo, 'backup', '--json'], { ...env, ...src.pgEnv });
    expect(b.stderr).toBe('');
    expect(b.status).toBe(0);
    const info = JSON.parse(b.stdout) as { postgres: { tablespaces: { name: string; location: string }[] } };
    expect(info.postgres.tablespaces.map((t) => t.name)).toEqual(['extra']);
    await src.query(`INSERT INTO far SELECT g, md5(g::text) FROM generate_series(20001, 20500) g`);
    await src.archiveNow();

    const to = join(work.dir, 'restored');
    // The original location is the running source's: refused, nothing overwritten.
    const refused = await cofferAsPostgres(['--repo', repo, 'restore', 'latest', '--to', join(work.dir, 'refused')], env);
    expect(refused.status).toBe(EXIT_CODES.COFFER_TARGET_NOT_EMPTY);
    expect(refused.stderr).toContain(location);
    expect(existsSync(join(work.dir, 'refused'))).toBe(false);
    // Not with --delta either: the running source's pg_tblspc points there, so it is refused as in use, untouched.
    const before = await readdir(location, { recursive: true });
    const delta = await cofferAsPostgres(['--repo', repo, 'restore', 'latest', '--to', join(work.dir, 'refused'), '--delta'], env);
    expect(delta.status).toBe(EXIT_CODES.COFFER_TARGET_IN_USE);
    expect(delta.stderr).toContain(`the running cluster in ${src.data}`);
    expect(await readdir(location, { recursive: true })).toEqual(before);
    expect(existsSync(join(work.dir, 'refused'))).toBe(false);
    const moved = join(work.dir, 'tblspc-restored');
    const r = await cofferAsPostgres(['--repo', repo, 'restore', 'latest', '--to', to, '--tablespace-map', `extra=${moved}`], env);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const [{ oid }] = (await src.query<{ oid: string }>(`SELECT oid::text FROM pg_tablespace WHERE spcname = 'extra'`)) as [{ oid: string }];
    expect(await readlink(join(to, 'pg_tblspc', oid))).toBe(moved);
    const c = await Cluster.adopt(install, to, { passphrase: env.COFFER_PASSPHRASE });
    await c.start({ archive_mode: 'off' });
    try {
      await c.waitPromoted();
      expect((await c.query<{ n: string }>('SELECT count(*)::text AS n FROM far'))[0]!.n).toBe('20500');
      expect((await c.query<{ loc: string }>(`SELECT pg_tablespace_location(oid) AS loc FROM pg_tablespace WHERE spcname = 'extra'`))[0]!.loc).toBe(moved);
    } finally {
      await c.stop();
    }
  }, 180_000);

  it('verify relocates the tablespace inside its sandbox, recovers with its rows and checks it, and leaves the original location alone', async () => {
    const location = join(work.dir, 'tblspc');
    const before = await readdir(location, { recursive: true });
    const parent = join(work.dir, 'verify-sandboxes');
    await mkdir(parent);
    const r = await coffer(['--repo', repo, 'verify', '--others', '0', '--json', '--keep-sandbox', '--sandbox', parent, '--smoke', 'SELECT count(*) = 20500 FROM far', '--smoke', `SELECT pg_tablespace_location(oid) LIKE '${parent}/%' FROM pg_tablespace WHERE spcname = 'extra'`], env);
    const report = JSON.parse(r.stdout) as VerifyRunReport;
    expect(report.failures).toEqual([]);
    expect(r.status).toBe(0);
    const b = report.backups[0]!;
    expect(b.checks.find((c) => c.name === 'amcheck')!.summary).toMatch(/tables/);
    const [{ oid }] = (await src.query<{ oid: string }>(`SELECT oid::text FROM pg_tablespace WHERE spcname = 'extra'`)) as [{ oid: string }];
    expect(await readlink(join(b.sandbox, 'data', 'pg_tblspc', oid))).toBe(join(b.sandbox, 'tablespaces', oid));
    expect(await readdir(location, { recursive: true })).toEqual(before);
  }, 180_000);
});
