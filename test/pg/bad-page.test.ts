/**
 * With data checksums on, a page damaged on disk does not stop the backup: a
 * damaged cluster is exactly when a backup matters. The backup completes,
 * stores the page as read, lists file and block in its manifest and summary,
 * says so on stderr and exits 33; the next backup reads that file again
 * whatever its mtime says.
 */
import { open, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EXIT_DAMAGED_PAGES } from '@coffer/cli';
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

interface Listed {
  id: string;
  damaged?: string[];
  damagedBlocks?: number;
}

describe('page checksums during backup', () => {
  it('a clean cluster backs up with every page verified', async () => {
    const r = await cofferAsPostgres(['--repo', repo, 'backup'], { ...env, ...c.pgEnv });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout).toContain('pages verified');
  });

  it('a damaged page completes the backup with warnings (exit 33), naming file and block, recorded in manifest and summary; the next backup reads the file again', async () => {
    const [{ path }] = (await c.query<{ path: string }>(`SELECT pg_relation_filepath('victim') AS path`)) as [{ path: string }];
    const block = 37;
    const fh = await open(join(c.data, path), 'r+');
    // Damage tuple data in the middle of the page, leaving its header (LSN, checksum) as it was.
    await fh.write(Buffer.from('garbage!'), 0, 8, block * 8192 + 4000);
    await fh.close();
    // Read on this thread here, on worker threads below: both carry the damaged blocks back.
    const metrics = join(work.dir, 'coffer_backup.prom');
    const r = await cofferAsPostgres(['--repo', repo, 'backup', '--workers', '0', '--metrics-textfile', metrics], { ...env, ...c.pgEnv });
    expect(r.status).toBe(EXIT_DAMAGED_PAGES);
    // The figure deploy/prometheus's CofferDamagedPages alert fires on.
    expect(await readFile(metrics, 'utf8')).toMatch(/^coffer_backup_damaged_pages\{command="backup",[^}]*\} 1$/m);
    expect(r.stderr).toContain(`1 page(s) in 1 file(s) failed their checksum twice`);
    expect(r.stderr).toContain(`${path} block ${block}`);
    const list = async () => JSON.parse((await cofferAsPostgres(['--repo', repo, 'list', '--json'], env)).stdout) as Listed[];
    const after = await list();
    expect(after).toHaveLength(2);
    expect(after[0]!.damaged).toBeUndefined();
    expect(after[1]!.damaged).toEqual([path]);
    expect(after[1]!.damagedBlocks).toBe(1);
    // Not touched since, yet read again: still damaged, still said.
    const again = await cofferAsPostgres(['--repo', repo, 'backup', '--json', '--workers', '2'], { ...env, ...c.pgEnv });
    expect(again.status).toBe(EXIT_DAMAGED_PAGES);
    expect((JSON.parse(again.stdout) as { stats: { damaged: string[] } }).stats.damaged).toEqual([path]);
    expect(await list()).toHaveLength(3);
  });
});
