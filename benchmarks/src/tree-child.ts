/**
 * One timed backup or restore in a process of its own, so its peak RSS
 * (worker threads included) is its own. Prints one JSON line.
 */
import { backupFiles, FileStore, LocalKeyProvider, Repository, restoreBackup } from '@coffer/engine';

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
process.stdout.write(JSON.stringify({ op, ms, maxRssMiB: process.resourceUsage().maxRSS / 1024, ...detail }) + '\n');
