/**
 * One timed backup or restore in a process of its own, so its peak RSS
 * (worker threads included) is its own. Prints one JSON line.
 */
import { readFileSync } from 'node:fs';
import { backupFiles, FileStore, LocalKeyProvider, Repository, restoreBackup } from '@coffer/engine';

/**
 * Peak RSS of this process image. Not `resourceUsage().maxRSS`: Linux keeps
 * that high-water mark across fork and exec, so a child reports its parent's.
 */
function peakRssMiB(): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'));
  return m ? Number(m[1]) / 1024 : process.resourceUsage().maxRSS / 1024;
}

const [op, repoDir, path] = process.argv.slice(2);
const provider = LocalKeyProvider.fromPassphrase(process.env.COFFER_PASSPHRASE ?? 'benchmark');
const repo = await Repository.open(new FileStore(repoDir!), provider);
const t0 = performance.now();
let detail: Record<string, number>;
if (op === 'backup') {
  const r = await backupFiles(repo, path!, { parent: 'auto' });
  detail = { bytes: r.manifest.stats.bytes, newBytes: r.manifest.stats.newBytes, storedBytes: r.manifest.stats.storedBytes, unchangedFiles: r.manifest.stats.unchangedFiles };
} else {
  const r = await restoreBackup(repo, 'latest', path!);
  detail = { bytes: r.bytes, requests: r.requests, bytesFetched: r.bytesFetched };
}
const ms = performance.now() - t0;
process.stdout.write(JSON.stringify({ op, ms, maxRssMiB: peakRssMiB(), ...detail }) + '\n');
