/** With data checksums on, a page corrupted on disk fails the backup, naming the file and block. */
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EXIT_CODES } from '@coffer/cli';
import { archivingCluster, cofferAsPostgres, debianInstall, type Cluster } from '../support/pg.js';

const env = { COFFER_PASSPHRASE: 'bad page passphrase' };
let work: { dir: string; cleanup: () => Promise<void> };
let c: Cluster;
let repo: string;

beforeAll(async () => {
  ({ work, repo, cluster: c } = await archivingCluster('coffer-badpage-', debianInstall(), env.COFFER_PASSPHRASE));
  await c.query('CREATE TABLE victim AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 50000) g');
  await c.query('CHECKPOINT');
}, 120_000);
afterAll(async () => {
  await c?.stop();
  await work?.cleanup();
});

describe('page checksums during backup', () => {
  it('a clean cluster backs up with every page verified', async () => {
    const r = await cofferAsPostgres(['--repo', repo, 'backup'], { ...env, ...c.pgEnv });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout).toContain('pages verified');
  });

  it('a corrupted page fails the backup naming file and block, and no backup is recorded', async () => {
    const [{ path }] = (await c.query<{ path: string }>(`SELECT pg_relation_filepath('victim') AS path`)) as [{ path: string }];
    const block = 37;
    const fh = await open(join(c.data, path), 'r+');
    // Damage tuple data in the middle of the page, leaving its header (LSN, checksum) as it was.
    await fh.write(Buffer.from('garbage!'), 0, 8, block * 8192 + 4000);
    await fh.close();
    const before = JSON.parse((await cofferAsPostgres(['--repo', repo, 'list', '--json'], env)).stdout) as unknown[];
    const r = await cofferAsPostgres(['--repo', repo, 'backup'], { ...env, ...c.pgEnv });
    expect(r.status).toBe(EXIT_CODES.COFFER_BAD_PAGE);
    expect(r.stderr).toContain(`${path} block ${block}`);
    const after = JSON.parse((await cofferAsPostgres(['--repo', repo, 'list', '--json'], env)).stdout) as unknown[];
    expect(after).toHaveLength(before.length);
  });
});
