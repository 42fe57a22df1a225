#!/usr/bin/env node
// A real backup-and-restore on the embedded defaults: a local directory store
// and a passphrase-derived key. Everything happens in a scratch directory that
// is removed at the end.
import { createHash } from 'node:crypto';
import { mkdtemp, mkdir, readFile, rm, symlink, writeFile, appendFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { backupFiles, checkRepository, FileStore, LocalKeyProvider, Repository, restoreBackup } from '@coffer/engine';

const work = await mkdtemp(join(tmpdir(), 'coffer-demo-'));
const say = (s) => console.log(s);
try {
  const src = join(work, 'source');
  await mkdir(join(src, 'docs'), { recursive: true });
  const rows = Array.from({ length: 200_000 }, (_, i) => `${i},customer-${i % 977},${(i * 37) % 10_000}.00\n`).join('');
  await writeFile(join(src, 'orders.csv'), rows);
  await writeFile(join(src, 'docs', 'readme.txt'), 'Coffer demo data\n');
  await symlink('docs/readme.txt', join(src, 'README'));

  process.env.COFFER_PASSPHRASE ??= 'demo passphrase';
  const key = LocalKeyProvider.fromPassphrase(process.env.COFFER_PASSPHRASE);
  const store = new FileStore(join(work, 'repository'));
  const repo = await Repository.init(store, key);
  say(`repository ${repo.config.repositoryId} at ${store.properties.location}`);

  const first = await backupFiles(repo, src);
  say(`backup 1: ${first.manifest.stats.files} files, ${first.manifest.stats.bytes} bytes, stored ${first.manifest.stats.storedBytes} bytes`);
  await appendFile(join(src, 'orders.csv'), '200000,customer-late,1.00\n');
  const second = await backupFiles(repo, src);
  say(`backup 2 after appending one row: ${second.manifest.stats.newBytes} new bytes, stored ${second.manifest.stats.storedBytes} bytes`);

  const out = join(work, 'restored');
  const restored = await restoreBackup(await Repository.open(store, key), 'latest', out);
  const digest = async (p) => createHash('sha256').update(await readFile(p)).digest('hex');
  const same = (await digest(join(src, 'orders.csv'))) === (await digest(join(out, 'orders.csv')));
  say(`restored ${restored.files} files into ${out}: orders.csv ${same ? 'identical' : 'DIFFERENT'}`);
  const report = await checkRepository(repo, { readData: true });
  say(`check --read-data: ${report.ok ? 'ok' : 'PROBLEMS'} (${report.chunksVerified} chunks verified)`);
  if (!same || !report.ok) process.exitCode = 1;
} finally {
  await rm(work, { recursive: true, force: true });
}
