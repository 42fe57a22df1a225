/**
 * Backup and restore of a generated file tree: throughput and peak RSS, each
 * step in its own process, inputs warmed and the page cache flushed (`sync`)
 * before every timed step.
 */
import { execFile } from 'node:child_process';
import { createReadStream } from 'node:fs';
import { mkdir, readdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';
import { FileStore, LocalKeyProvider, Repository } from '@coffer/engine';
import { mixedData } from './pipeline.js';
import { sync } from './measure.js';

const run = promisify(execFile);
const CHILD = fileURLToPath(new URL('./tree-child.js', import.meta.url));

export interface TreeStep {
  op: string;
  ms: number;
  maxRssMiB: number;
  bytes: number;
  storedBytes?: number;
  /** Store requests (S3 only; for a restore, the engine's pack reads). */
  requests?: number;
  byOperation?: Record<string, number>;
}

export interface TreeFigures {
  bytes: number;
  files: number;
  backup: TreeStep;
  secondBackup: TreeStep;
  restore: TreeStep;
  repositoryBytes: number;
}

/** Large files of mixed content plus many small ones: about `bytes` in all. */
export async function generateTree(root: string, bytes: number): Promise<number> {
  await rm(root, { recursive: true, force: true });
  const big = 32 << 20;
  const small = 128 << 10;
  const bigCount = Math.max(1, Math.floor((bytes * 0.75) / big));
  const smallCount = Math.max(1, Math.floor((bytes - bigCount * big) / small));
  let files = 0;
  for (let i = 0; i < bigCount; i++) {
    const dir = join(root, `big/${i % 8}`);
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, `file${i}.dat`), mixedData(big));
    files++;
  }
  const pool = mixedData(4 << 20);
  for (let i = 0; i < smallCount; i++) {
    const dir = join(root, `small/${i % 64}`);
    if (i < 64) await mkdir(dir, { recursive: true });
    const o = (i * 7919 * 64) % (pool.length - small);
    await writeFile(join(dir, `s${i}.txt`), Buffer.concat([Buffer.from(`file ${i}\n`), pool.subarray(o, o + small - 16)]));
    files++;
  }
  return files;
}

export async function warm(dir: string): Promise<void> {
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (!e.isFile()) continue;
    await new Promise<void>((resolve, reject) => createReadStream(join(e.parentPath, e.name)).on('data', () => {}).on('end', resolve).on('error', reject));
  }
}

export async function step(op: 'backup' | 'restore', repo: string, path: string, env: Record<string, string> = {}): Promise<TreeStep> {
  sync();
  const { stdout } = await run(process.execPath, [CHILD, op, repo, path], { env: { ...process.env, COFFER_PASSPHRASE: 'benchmark', ...env }, maxBuffer: 1 << 20 });
  return JSON.parse(stdout) as TreeStep;
}

export async function dirBytes(dir: string): Promise<number> {
  const { stdout } = await run('du', ['-sb', dir]);
  return Number(stdout.split('\t')[0]);
}

export async function treeFigures(workDir: string, bytes: number): Promise<TreeFigures> {
  const src = join(workDir, 'src');
  const repo = join(workDir, 'repo');
  const out = join(workDir, 'restore');
  await rm(repo, { recursive: true, force: true });
  await rm(out, { recursive: true, force: true });
  const files = await generateTree(src, bytes);
  const total = await dirBytes(src);
  await Repository.init(new FileStore(repo), LocalKeyProvider.fromPassphrase('benchmark'));
  await warm(src);
  const backup = await step('backup', repo, src);
  await warm(src);
  const secondBackup = await step('backup', repo, src);
  const restore = await step('restore', repo, out);
  const repositoryBytes = await dirBytes(repo);
  await rm(out, { recursive: true, force: true });
  return { bytes: total, files, backup, secondBackup, restore, repositoryBytes };
}
