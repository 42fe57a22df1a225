/**
 * Restores a backup into a directory. Plans from the manifest graph, then
 * fetches each needed pack range once, `concurrency` requests at a time, and
 * for every chunk in it: verify (pack SHA-256 on whole-pack reads, AEAD tag,
 * chunk id), then write it to every file offset that uses it. No unverified
 * byte is written. Memory is bounded by `concurrency × maxRequest`.
 */
import { chmod, chown, lchown, lutimes, mkdir, open, readdir, symlink, utimes, type FileHandle } from 'node:fs/promises';
import { isAbsolute, join } from 'node:path';
import pLimit from 'p-limit';
import { asBuffer, sha256Hex } from '../bytes.js';
import { CorruptObjectError, MissingObjectError, TargetNotEmptyError } from '../errors.js';
import { packKey } from '../format/keys-layout.js';
import type { BackupManifest, TreeEntry } from '../format/manifest.js';
import type { Repository } from '../repository/repository.js';
import { DEFAULT_PLAN, filesUsing, planRestore, type FetchRange, type PlanOptions } from './plan.js';

export interface RestoreProgress {
  bytesTotal: number;
  bytesDone: number;
  filesTotal: number;
  filesDone: number;
}

export interface RestoreOptions {
  /** Pack requests in flight (default 3: with 16 MiB packs read whole, about 50 MiB of reads in memory). */
  concurrency?: number;
  plan?: Partial<PlanOptions>;
  onProgress?: (p: RestoreProgress) => void;
  /** Set owners from the backup (default: when running as root). */
  restoreOwners?: boolean;
}

export interface RestoreResult {
  key: string;
  manifest: BackupManifest;
  files: number;
  bytes: number;
  /** Store requests made, and how many of them read a byte range rather than a whole pack. */
  requests: number;
  rangedRequests: number;
  bytesFetched: number;
}

/** Open file handles kept for files still receiving chunks; beyond this, writes open and close. */
const MAX_OPEN_FILES = 256;

export async function restoreBackup(repo: Repository, selector: string, targetDir: string, options: RestoreOptions = {}): Promise<RestoreResult> {
  const { key, manifest } = await repo.resolveBackup(selector);
  const entries = manifest.entries;
  for (const e of entries) {
    if (e.path !== '.' && (isAbsolute(e.path) || e.path.split('/').some((p) => p === '..' || p === '.' || p === ''))) {
      throw new CorruptObjectError(key, `manifest entry ${JSON.stringify(e.path)} would escape the restore target`);
    }
  }
  const plan = await planRestore(repo, entries, { ...DEFAULT_PLAN, ...options.plan });
  if (plan.unindexed.length > 0) {
    const first = plan.unindexed[0]!;
    throw new MissingObjectError(`chunk ${first.id.toString('hex')}`, `no index lists it (${plan.unindexed.length} chunk(s) missing)`, filesUsing(entries, plan.unindexed.map((c) => c.id)));
  }
  await prepareTarget(targetDir);

  const pathOf = (e: TreeEntry) => (e.path === '.' ? targetDir : join(targetDir, ...e.path.split('/')));
  // Directories first, writable by us until their final modes are applied at the end.
  for (const e of entries) if (e.type === 'dir') await mkdir(pathOf(e), { recursive: true, mode: 0o700 });
  const remaining = new Int32Array(entries.length);
  for (const c of plan.chunks.values()) for (const u of c.uses) remaining[u.file]!++;
  const progress: RestoreProgress = { bytesTotal: 0, bytesDone: 0, filesTotal: 0, filesDone: 0 };
  for (let i = 0; i < entries.length; i++) {
    const e = entries[i]!;
    if (e.type === 'file') {
      const fh = await open(pathOf(e), 'w', 0o600);
      await fh.truncate(e.size ?? 0);
      if (remaining[i] === 0) await fh.sync();
      await fh.close();
      progress.filesTotal++;
      progress.bytesTotal += e.size ?? 0;
      if (remaining[i] === 0) progress.filesDone++;
    } else if (e.type === 'symlink') {
      await symlink(e.target ?? '', pathOf(e));
    }
  }

  const handles = new Map<number, Promise<FileHandle>>();
  const writeTo = async (file: number, data: Uint8Array, offset: number): Promise<void> => {
    let h = handles.get(file);
    const transient = !h && handles.size >= MAX_OPEN_FILES;
    if (!h) {
      h = open(pathOf(entries[file]!), 'r+');
      if (!transient) handles.set(file, h);
    }
    const fh = await h;
    let done = 0;
    while (done < data.byteLength) done += (await fh.write(data, done, data.byteLength - done, offset + done)).bytesWritten;
    const left = --remaining[file]!;
    if (left === 0) {
      handles.delete(file);
      await fh.sync();
      await fh.close();
      progress.filesDone++;
    } else if (transient) await fh.close();
  };

  let requests = 0;
  let rangedRequests = 0;
  let bytesFetched = 0;
  let failed: unknown;
  const limit = pLimit(Math.max(1, options.concurrency ?? 3));
  const runRange = async (r: FetchRange): Promise<void> => {
    if (failed) return;
    const key = packKey(r.pack);
    const affected = () => filesUsing(entries, r.chunks.map((c) => c.id));
    let data: Buffer;
    try {
      data = asBuffer(await repo.store.get(key, r.whole ? undefined : { offset: r.offset, length: r.length }));
    } catch (e) {
      if (e instanceof MissingObjectError) throw new MissingObjectError(key, 'not found in the store', affected());
      throw e;
    }
    requests++;
    if (!r.whole) rangedRequests++;
    bytesFetched += data.length;
    if (r.whole && sha256Hex(data) !== r.pack) throw new CorruptObjectError(key, 'SHA-256 of its bytes does not match its name', affected());
    // One decompression buffer per request, reused chunk after chunk (writes are awaited in turn).
    const scratch = Buffer.allocUnsafeSlow(Math.max(...r.chunks.map((c) => c.rawLength)));
    for (const c of r.chunks) {
      const start = c.offset! - r.offset;
      const plain = repo.codec.decode(c.id, data.subarray(start, start + c.length!), scratch);
      if (typeof plain === 'string') throw new CorruptObjectError(key, plain, affected());
      for (const u of c.uses) {
        await writeTo(u.file, plain, u.offset);
        progress.bytesDone += plain.length;
      }
      options.onProgress?.({ ...progress });
    }
  };
  try {
    await Promise.all(
      plan.ranges.map((r) =>
        limit(() =>
          runRange(r).catch((e: unknown) => {
            failed ??= e;
          }),
        ),
      ),
    );
  } finally {
    for (const h of handles.values()) await (await h).close().catch(() => undefined);
  }
  if (failed) throw failed;

  await applyMetadata(entries, pathOf, options.restoreOwners ?? process.getuid?.() === 0);
  return { key, manifest, files: progress.filesTotal, bytes: progress.bytesTotal, requests, rangedRequests, bytesFetched };
}

async function prepareTarget(dir: string): Promise<void> {
  try {
    const names = await readdir(dir);
    if (names.length > 0) throw new TargetNotEmptyError(dir);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    await mkdir(dir, { recursive: true, mode: 0o700 });
  }
}

/**
 * utimes takes seconds as a double, which resolves ~0.24 µs at today's epoch
 * values and is truncated to ns by the kernel call: aiming at the middle of
 * the microsecond makes the restored time exact to the microsecond.
 */
function toTime(ns: string): number {
  const big = BigInt(ns);
  return Number(big / 1_000_000_000n) + (Number((big % 1_000_000_000n) / 1000n) + 0.5) / 1e6;
}

async function applyMetadata(entries: readonly TreeEntry[], pathOf: (e: TreeEntry) => string, owners: boolean): Promise<void> {
  for (const e of entries) {
    const p = pathOf(e);
    const t = toTime(e.mtimeNs);
    if (e.type === 'file') {
      if (owners) await chown(p, e.uid, e.gid);
      await chmod(p, e.mode);
      await utimes(p, t, t);
    } else if (e.type === 'symlink') {
      if (owners) await lchown(p, e.uid, e.gid);
      await lutimes(p, t, t);
    }
  }
  // Deepest directories first: setting a child's times changes nothing above, but creating entries did.
  const dirs = entries.filter((e) => e.type === 'dir').sort((a, b) => depth(b.path) - depth(a.path));
  for (const e of dirs) {
    const p = pathOf(e);
    if (owners) await chown(p, e.uid, e.gid);
    await chmod(p, e.mode);
    const fh = await open(p, 'r');
    await fh.sync();
    await fh.close();
    const t = toTime(e.mtimeNs);
    await utimes(p, t, t);
  }
}

function depth(path: string): number {
  return path === '.' ? 0 : path.split('/').length;
}
