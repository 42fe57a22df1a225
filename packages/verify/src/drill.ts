import { mkdtemp, open, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chunkId, createChunker, displayPath, fsPath, recordVerification, restoreBackup, type Repository, type TreeEntry } from '@coffer/engine';

export interface DrillOptions {
  /** Parent directory for the sandbox (default: the OS temp directory). */
  sandboxParent?: string;
  /** Keep the sandbox afterwards (default: removed). */
  keep?: boolean;
  /** Told the sandbox directory as soon as it exists (a caller that handles signals removes it if the process is stopped). */
  onSandbox?: (dir: string) => void;
  /** Write a verification record into the repository (default true): expire keeps the newest backup that passed. */
  record?: boolean;
}

export interface DrillReport {
  ok: boolean;
  /** The verification record written into the repository, when it could be written. */
  recorded?: string;
  backup: string;
  sandbox: string;
  files: number;
  bytes: number;
  restoreSeconds: number;
  verifySeconds: number;
  /** Restored files whose content does not re-derive the manifest's chunk ids. */
  mismatches: string[];
}

export async function drillRestore(repo: Repository, selector: string, options: DrillOptions = {}): Promise<DrillReport> {
  const sandbox = await mkdtemp(join(options.sandboxParent ?? tmpdir(), 'coffer-drill-'));
  options.onSandbox?.(sandbox);
  try {
    const t0 = performance.now();
    const restored = await restoreBackup(repo, selector, join(sandbox, 'restore'));
    const t1 = performance.now();
    const mismatches: string[] = [];
    for (const e of restored.manifest.entries) {
      if (e.type !== 'file') continue;
      if (!(await fileMatches(repo, join(sandbox, 'restore', ...e.path.split('/')), e))) mismatches.push(displayPath(e.path));
    }
    const t2 = performance.now();
    const ok = mismatches.length === 0;
    let recorded: string | undefined;
    if (options.record !== false) {
      // What retention reads ("never the newest backup that passed verification"); a repository this drill may
      // not write to (read-only credentials) still gets its report.
      recorded = await recordVerification(repo, { backup: restored.key, at: new Date().toISOString(), ok, checks: ['restore', 'chunk-ids'], ...(ok ? {} : { problems: mismatches.map((m) => `content of ${m} does not match its chunk ids`) }) }).catch(() => undefined);
    }
    return {
      ok,
      ...(recorded ? { recorded } : {}),
      backup: restored.key,
      sandbox,
      files: restored.files,
      bytes: restored.bytes,
      restoreSeconds: (t1 - t0) / 1000,
      verifySeconds: (t2 - t1) / 1000,
      mismatches,
    };
  } finally {
    if (!options.keep) await rm(sandbox, { recursive: true, force: true });
  }
}

async function fileMatches(repo: Repository, path: string, entry: TreeEntry): Promise<boolean> {
  const chunker = createChunker(entry.chunking === 'fixed' && repo.config.relationChunker ? repo.config.relationChunker : repo.config.chunker);
  const ids: string[] = [];
  const fh = await open(fsPath(path), 'r');
  let size = 0;
  try {
    const buf = Buffer.allocUnsafe(4 * 1024 * 1024);
    for (;;) {
      const { bytesRead } = await fh.read(buf, 0, buf.length, null);
      if (bytesRead === 0) break;
      size += bytesRead;
      for (const c of chunker.push(buf.subarray(0, bytesRead))) ids.push(chunkId(repo.keyRing.material.idKey, c).toString('hex'));
    }
    for (const c of chunker.finish()) ids.push(chunkId(repo.keyRing.material.idKey, c).toString('hex'));
  } finally {
    await fh.close();
  }
  const expected = entry.chunks ?? [];
  return size === entry.size && ids.length === expected.length && ids.every((id, i) => id === expected[i]);
}
