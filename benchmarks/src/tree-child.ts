/**
 * One timed backup or restore in a process of its own, so its peak RSS
 * (worker threads included) is its own. Prints one JSON line.
 */
import { readFileSync } from 'node:fs';
import { backupFiles, FileStore, LocalKeyProvider, Repository, restoreBackup, type ObjectStore } from '@coffer/engine';
import { parseS3Url, S3Store } from '@coffer/aws';

/**
 * Peak RSS of this process image. Not `resourceUsage().maxRSS`: Linux keeps
 * that high-water mark across fork and exec, so a child reports its parent's.
 */
function peakRssMiB(): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'));
  return m ? Number(m[1]) / 1024 : process.resourceUsage().maxRSS / 1024;
}

const [op, location, path] = process.argv.slice(2);
const provider = LocalKeyProvider.fromPassphrase(process.env.COFFER_PASSPHRASE ?? 'benchmark');
// An s3:// location is reached with the AWS SDK's environment (endpoint, region, credentials).
const s3 = location!.startsWith('s3://')
  ? new S3Store({ ...parseS3Url(location!), endpoint: process.env.AWS_ENDPOINT_URL_S3!, region: process.env.AWS_REGION ?? 'us-east-1' })
  : undefined;
const store: ObjectStore = s3 ?? new FileStore(location!);
const repo = await Repository.open(store, provider);
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
const requests = s3 ? { requests: s3.stats.requests, byOperation: s3.stats.byOperation, retries: s3.stats.retries } : {};
process.stdout.write(JSON.stringify({ op, ms, maxRssMiB: peakRssMiB(), ...detail, ...requests }) + '\n');
s3?.destroy();
