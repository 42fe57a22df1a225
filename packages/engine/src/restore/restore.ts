/**
 * Restores a backup into a directory. Plans from the manifest graph, then
 * fetches each needed pack range once, `concurrency` requests at a time, and
 * for every chunk in it: verify (pack SHA-256 on whole-pack reads, AEAD tag,
 * chunk id), then write it to every file offset that uses it. No unverified
 * byte is written. Memory is bounded by `concurrency × maxRequest` (plus the
 * page deltas read ahead, within their own budget). Preparation overlaps:
 * the first ranges are fetched while deltas are read ahead and files are
 * created, and into an empty target a file with places to write is created
 * by its first writer.
 */
import { constants as fsc } from 'node:fs';
import { link, mkdir, open, readlink, rename, rm, symlink, utimes, type FileHandle } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { dirname, join } from 'node:path';
import pLimit from 'p-limit';
import { fsyncDir, fsyncFile, writeDurably } from '../durable.js';
import { fsPath } from '../names.js';
import { CorruptObjectError, MissingObjectError } from '../errors.js';
import { packKey } from '../format/keys-layout.js';
import type { BackupManifest, TreeEntry } from '../format/manifest.js';
import type { LoadedBackup, Repository } from '../repository/repository.js';
import { withLease } from '../repository/leases.js';
import { writeRange } from './range-writer.js';
import { checkWholePack, fetchRange } from './fetch-range.js';
import { DELTA_PRELOAD_BYTES, preloadDeltas, type DeltaFrames } from './delta-preload.js';
import { applyMetadata, readLink, toTime } from './metadata.js';
import { applyLinkMap, assertEmptyOrAbsent, checkEntryPaths, checkFilesDeltaTarget, dropChunksInPlace, hasContent, prepareTarget, removeUnlisted, RESTORING_SUFFIX, writeFilesMark } from './target.js';
import { RestoreWorkerPool } from './restore-pool.js';
import type { RestoreJob } from './restore-protocol.js';
import { chainRoots, DEFAULT_PLAN, filesUsing, liveUses, locateChunks, planFetches, rangeChunks, restorePhases, type ChunkLookup, type FetchRange, type PlanOptions } from './plan.js';

export interface RestoreProgress {
  bytesTotal: number;
  bytesDone: number;
  filesTotal: number;
  filesDone: number;
}

export interface RestoreOptions {
  /** Time-to-live of the restore's lease (default 60 s): garbage collection deletes nothing this restore may read while it holds it. */
  leaseTtlMs?: number;
  /** Pack requests in flight (default 3: with 16 MiB packs read whole, about 50 MiB of reads in memory). */
  concurrency?: number;
  plan?: Partial<PlanOptions>;
  /**
   * Memory for page deltas read ahead and applied before each page is written once (default 32 MiB); a
   * backup whose deltas need more is restored phase by phase instead, each delta applied to its base read
   * back from the target. 0 always takes phases.
   */
  deltaPreloadBytes?: number;
  onProgress?: (p: RestoreProgress) => void;
  /** Threads that verify and write chunks; 0 does it on the calling thread. Default: one per core (up to 4) for large restores. */
  workers?: number;
  /** Set owners from the backup (default: when running as root). */
  restoreOwners?: boolean;
  /**
   * Restore over existing content: chunks already in place are kept, only
   * differing ones are written, and whatever the backup does not hold is
   * removed. Without it the target must be empty or absent.
   */
  delta?: boolean;
  /**
   * Entries to restore outside the target (PostgreSQL tablespaces): entry path
   * → absolute directory. The entry itself becomes a symlink to that directory,
   * which must be empty or absent (unless `delta`).
   */
  relocate?: ReadonlyMap<string, string>;
  /**
   * Symlink entries restored otherwise (a PostgreSQL data directory's
   * `pg_wal` link, say, which must never point a restored cluster at the
   * source's WAL): `'dir'` makes a real directory in its place, an absolute
   * path a link to that directory (empty or absent, like `relocate`).
   */
  linkMap?: ReadonlyMap<string, string>;
  /**
   * Files written under a temporary name and renamed into place only after
   * every other file and directory is durable (and after `beforeLast`):
   * PostgreSQL's `global/pg_control`, so that an interrupted restore never
   * leaves a cluster that starts as if it were consistent.
   */
  lastFiles?: ReadonlySet<string>;
  /** Runs when everything but `lastFiles` is durable (PostgreSQL: write backup_label and the recovery settings). */
  beforeLast?: () => Promise<void>;
  /**
   * A file (not in the backup) written into the target and every relocated
   * directory before anything else, and kept by delta restores: it says a
   * restore, perhaps an interrupted one, owns these directories.
   */
  marker?: { name: string; content: string };
  /**
   * With `delta`: go over a non-empty target that holds no mark of an earlier
   * restore (files restores mark their target directory with an extended
   * attribute; PostgreSQL restores with a marker file).
   */
  force?: boolean;
  /** Check the target and report what a restore would remove, changing nothing. */
  dryRun?: boolean;
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
  /** File bytes written (less than `bytes` after a delta restore that found data in place). */
  bytesWritten: number;
  /** What could not be restored as it was backed up but did not stop the restore (an extended attribute this user or file system cannot set). */
  warnings: string[];
  /** What a delta restore removed from the target because the backup does not hold it (a directory once); with `dryRun`, would remove. */
  removed: string[];
  /** Nothing was written: the figures say what the restore would do. */
  dryRun?: boolean;
}

/** File-system calls in flight while creating files and applying their metadata (each waits on the thread pool, not the CPU). */
const FS_PARALLEL = 16;

/** A range expanding to less than this goes to one worker whole (others keep the rest busy); past it — a pack of pages — it is shared. */
const MIN_SPLIT_BYTES = 64 * 1024 * 1024;

/** Below this much to write, worker start-up costs more than it saves. */
const WORKER_THRESHOLD = 32 * 1024 * 1024;

/** Open file handles kept for files still receiving chunks; beyond this, writes open and close. */
const MAX_OPEN_FILES = 256;

/** Restores the backup `selector` names (or one already loaded, whose manifest is then not read again) into `targetDir`. */
export async function restoreBackup(repo: Repository, selector: string | LoadedBackup, targetDir: string, options: RestoreOptions = {}): Promise<RestoreResult> {
  const { key, manifest } = typeof selector === 'string' ? await repo.resolveBackup(selector) : selector;
  checkEntryPaths(key, manifest.entries);
  const relocate = new Map(options.relocate ?? []);
  const entries = applyLinkMap(manifest.entries, options.linkMap, relocate);
  const lastFiles = options.lastFiles ?? new Set<string>();
  // Workers start now, loading while the plan is made (a delta restore may end up writing little: they then idle).
  const bytes = entries.reduce((n, e) => n + (e.size ?? 0), 0);
  const workers = options.workers ?? (bytes >= WORKER_THRESHOLD ? Math.min(availableParallelism(), 4) : 0);
  const pool = workers > 0 ? new RestoreWorkerPool(repo, workers) : undefined;
  try {
    // Garbage collection waits for the restore's lease before it deletes a pack the restore may read.
    return await withLease(repo, { purpose: 'restore', ...(options.leaseTtlMs !== undefined ? { ttlMs: options.leaseTtlMs } : {}) }, () => restoreWith(pool, workers));
  } finally {
    await pool?.close();
  }

  async function restoreWith(pool: RestoreWorkerPool | undefined, workers: number): Promise<RestoreResult> {
    const lookup = await locateChunks(repo, entries, key);
    if (lookup.unindexed.length > 0) {
      const first = lookup.unindexed[0]!;
      throw new MissingObjectError(`chunk ${lookup.table.hex(first)}`, `no index lists it (${lookup.unindexed.length} chunk(s) missing)`, filesUsing(entries, lookup, lookup.unindexed));
    }
    const placeOf = (e: TreeEntry) => {
      if (e.path === '.') return targetDir;
      for (const [prefix, dir] of relocate) {
        if (e.path === prefix) return dir;
        if (e.path.startsWith(prefix + '/')) return join(dir, ...e.path.slice(prefix.length + 1).split('/'));
      }
      return join(targetDir, ...e.path.split('/'));
    };
    const pathOf = (e: TreeEntry) => (lastFiles.has(e.path) ? placeOf(e) + RESTORING_SUFFIX : placeOf(e));
    // Every destination is checked before any is created: a refusal leaves nothing behind.
    if (!options.delta) for (const dir of [targetDir, ...relocate.values()]) await assertEmptyOrAbsent(dir);
    const marker = options.marker;
    const filesMark = marker ? undefined : JSON.stringify({ repository: repo.config.repositoryId, source: manifest.source });
    const occupied = options.delta && (await hasContent(targetDir));
    if (occupied && filesMark !== undefined && !options.force) await checkFilesDeltaTarget(targetDir, filesMark, manifest.source);
    if (options.dryRun) {
      const removed = occupied ? await removeUnlisted(targetDir, entries, relocate, lastFiles, marker?.name, true) : [];
      const files = entries.filter((e) => e.type === 'file').length;
      return { key, manifest, files, bytes, requests: 0, rangedRequests: 0, bytesFetched: 0, bytesWritten: 0, warnings: [], removed, dryRun: true };
    }
    const existing = await prepareTarget(targetDir, !!options.delta);
    for (const dir of relocate.values()) await prepareTarget(dir, !!options.delta);
    if (marker) for (const dir of [targetDir, ...relocate.values()]) await writeDurably(join(dir, marker.name), marker.content);
    // A files restore marks its target first, so that a retry with --delta after an interruption is accepted.
    if (filesMark !== undefined) await writeFilesMark(targetDir, filesMark);
    let removed: string[] = [];
    if (existing) {
      removed = await removeUnlisted(targetDir, entries, relocate, lastFiles, marker?.name);
      await dropChunksInPlace(repo, entries, lookup, pathOf);
    }
    const planOptions = { ...DEFAULT_PLAN, ...options.plan };
    // What phase 0 writes: the chunk each live place's chain starts from (damaged chains fail here, first).
    const roots = chainRoots(lookup, key);

    // Directories first, writable by us until their final modes are applied at the end.
    for (const e of entries) if (e.type === 'dir') await mkdir(fsPath(pathOf(e)), { recursive: true, mode: 0o700 });
    for (const [prefix, dir] of relocate) {
      const at = join(targetDir, ...prefix.split('/'));
      if ((await readlink(at).catch(() => undefined)) !== dir) {
        await rm(at, { recursive: true, force: true });
        await symlink(dir, at);
      }
    }
    // A file is complete, and made durable, once every phase has written its places. Until the phases are
    // known, every file counts as incomplete: a failure then removes all that this restore created.
    const remaining = new Int32Array(entries.length);
    entries.forEach((e, i) => (remaining[i] = e.type === 'file' && e.linkTo === undefined ? 1 : 0));
    const progress: RestoreProgress = { bytesTotal: 0, bytesDone: 0, filesTotal: 0, filesDone: 0 };
    const fsLimit = pLimit(FS_PARALLEL);
    // Into an empty target, a file with places to write is created by its first writer (a worker or this
    // thread), at its size, so that writing need not wait for a thousand files to be made one by one; the
    // others are created here meanwhile. Over existing content every file is made ready here, first.
    const writerCreates = (i: number) => !existing && lookup.fileStart[i + 1]! > lookup.fileStart[i]!;
    for (const e of entries) {
      if (e.type !== 'file' || e.linkTo !== undefined) continue;
      progress.filesTotal++;
      progress.bytesTotal += e.size ?? 0;
    }
    let creating: Promise<unknown> = Promise.resolve();
    try {
      creating = Promise.all(
        entries.map((e, i) =>
          fsLimit(async () => {
            if (e.type === 'file' && e.linkTo === undefined) {
              if (writerCreates(i)) return;
              // Over existing content keep the bytes (chunks in place stay); otherwise start empty.
              // O_NOFOLLOW: a link planted at a file's name is never followed out of the target.
              const fh = await open(fsPath(pathOf(e)), (existing ? fsc.O_RDWR | fsc.O_CREAT : fsc.O_WRONLY | fsc.O_CREAT | fsc.O_TRUNC) | fsc.O_NOFOLLOW, 0o600);
              try {
                await fh.truncate(e.size ?? 0);
              } finally {
                await fh.close();
              }
            } else if (e.type === 'symlink') {
              const p = fsPath(pathOf(e));
              if (existing && (await readLink(p)) === e.target) return;
              if (existing) await rm(p, { force: true, recursive: true });
              await symlink(fsPath(e.target ?? ''), p);
            }
          }),
        ),
      );
      // Chunks stored as page deltas are read ahead and applied in memory when they fit the budget, else in
      // phases after what they are taken against (plan.ts, delta-preload.ts). Meanwhile the files are created
      // and the first ranges of phase 0, which is the same either way, are fetched.
      let phases: ChunkLookup[] = [];
      let frames: DeltaFrames | undefined;
      const ready = (async () => {
        frames = await preloadDeltas(repo, entries, lookup, { plan: planOptions, budget: options.deltaPreloadBytes ?? DELTA_PRELOAD_BYTES, concurrency: options.concurrency ?? 3 });
        const preloaded = frames;
        phases = restorePhases(lookup, key, preloaded && ((c) => preloaded.has(c)));
        remaining.fill(0);
        for (const phase of phases) for (let u = 0; u < phase.live.length; u++) remaining[phase.useFile[u]!]! += phase.live[u]!;
        await creating;
        // Files with nothing to write (empty, or all in place already) are complete now.
        await Promise.all(
          entries.map((e, i) =>
            e.type !== 'file' || e.linkTo !== undefined || remaining[i] !== 0
              ? undefined
              : fsLimit(async () => {
                  await fsyncFile(fsPath(pathOf(e)));
                  progress.filesDone++;
                }),
          ),
        );
      })();
      // Each range awaits it, and so does the restore after its last phase.
      ready.catch(() => undefined);
      const frameOf = (c: number) => frames?.get(c);

      const handles = new Map<number, Promise<FileHandle>>();
      /** A file this thread writes, created at its size by the first write when `writerCreates` (again later: harmless). */
      const openForWriting = async (file: number): Promise<FileHandle> => {
        const e = entries[file]!;
        if (!writerCreates(file)) return open(fsPath(pathOf(e)), fsc.O_RDWR | fsc.O_NOFOLLOW);
        const fh = await open(fsPath(pathOf(e)), fsc.O_RDWR | fsc.O_CREAT | fsc.O_NOFOLLOW, 0o600);
        try {
          await fh.truncate(e.size ?? 0);
        } catch (err) {
          await fh.close();
          throw err;
        }
        return fh;
      };
      /** Reads what a place holds now (a delta's base), in the main thread's own restores. */
      const readFrom = async (file: number, into: Buffer, offset: number): Promise<number> => {
        const fh = await (handles.get(file) ?? open(fsPath(pathOf(entries[file]!)), fsc.O_RDONLY | fsc.O_NOFOLLOW));
        try {
          let n = 0;
          while (n < into.length) {
            const { bytesRead } = await fh.read(into, n, into.length - n, offset + n);
            if (bytesRead === 0) break;
            n += bytesRead;
          }
          return n;
        } finally {
          if (!handles.has(file)) await fh.close();
        }
      };
      /** Writes `data` at `offset`, which completes `uses` chunk uses of the file. */
      const writeTo = async (file: number, data: Uint8Array, offset: number, uses = 1): Promise<void> => {
        let h = handles.get(file);
        const transient = !h && handles.size >= MAX_OPEN_FILES;
        if (!h) {
          h = openForWriting(file);
          if (!transient) handles.set(file, h);
        }
        const fh = await h;
        let done = 0;
        try {
          while (done < data.byteLength) done += (await fh.write(data, done, data.byteLength - done, offset + done)).bytesWritten;
        } catch (e) {
          // Writes through a descriptor name no file: name it (ENOSPC, EIO…).
          throw Object.assign(e as NodeJS.ErrnoException, { path: (e as NodeJS.ErrnoException).path ?? pathOf(entries[file]!) });
        }
        bytesWritten += done;
        const left = (remaining[file]! -= uses);
        if (left === 0) {
          handles.delete(file);
          await fh.sync();
          await fh.close();
          progress.filesDone++;
        } else if (transient) await fh.close();
      };
      /**
       * Uses written by a worker: a file whose chunks are now all written is made durable here, while the
       * restore goes on (many fsyncs in flight let the file system commit them together; one after another,
       * each waits for its own commit).
       */
      const syncing: Promise<void>[] = [];
      const completeUses = (file: number, uses: number): void => {
        if ((remaining[file]! -= uses) !== 0) return;
        const sync = fsLimit(async () => {
          await fsyncFile(fsPath(pathOf(entries[file]!)));
          progress.filesDone++;
        });
        syncing.push(
          sync.catch((e: unknown) => {
            failed ??= e;
          }),
        );
      };

      let requests = 0;
      let rangedRequests = 0;
      let bytesWritten = 0;
      let bytesFetched = 0;
      let failed: unknown;
      let jobs = 0;
      const limit = pLimit(Math.max(1, options.concurrency ?? 3));
      const runRange = async (p: number, r: FetchRange): Promise<void> => {
        if (failed) return;
        const key = packKey(r.pack);
        const data = await fetchRange(repo, r, () => filesUsing(entries, lookup, r.chunks));
        requests++;
        if (!r.whole) rangedRequests++;
        bytesFetched += data.length;
        await ready;
        if (failed) return;
        const deltas = p > 0;
        const phase = phases[p]!;
        const affected = () => filesUsing(entries, phase, r.chunks);
        if (pool) {
          // A range with many chunks (a pack of pages can expand to hundreds of MB) is shared by all workers.
          const parts = splitChunks(phase, r.chunks, workers);
          // The first part takes the fetched buffer itself (moved, not copied, when it owns its memory) and checks
          // a whole pack against its name; the others get copies of their bytes, made before anything moves (their
          // chunks are still checked one by one, tag and id, before any is written).
          const { table } = phase;
          const starts = parts.map((part, i) => (i === 0 ? 0 : table.offset[part[0]!]! - r.offset));
          const owned = data.byteOffset === 0 && data.byteLength === data.buffer.byteLength;
          const buffers = parts.map((part, i) => {
            const last = part[part.length - 1]!;
            return i === 0 && owned ? data : copyOwned(data.subarray(starts[i], i === 0 ? data.length : table.offset[last]! + table.length[last]! - r.offset));
          });
          const replies = await Promise.all(
            parts.map((part, i) => {
              const bytes = buffers[i]!;
              const chunks = { ...rangeChunks(phase, part, r.offset + starts[i]!, frameOf), deltas };
              const paths: Record<number, string> = {};
              const create: Record<number, number> = {};
              for (const f of chunks.useFiles) {
                paths[f] ??= pathOf(entries[f]!);
                if (writerCreates(f)) create[f] ??= entries[f]!.size ?? 0;
              }
              const job: RestoreJob = { t: 'range', job: ++jobs, data: bytes, ...(r.whole && i === 0 ? { sha: r.pack } : {}), ...chunks, paths, create, holes: !existing && !deltas };
              const transfer = [bytes.buffer, chunks.ids.buffer, chunks.starts.buffer, chunks.lengths.buffer, chunks.rawLengths.buffer, chunks.useCounts.buffer, chunks.useFiles.buffer, chunks.useOffsets.buffer] as ArrayBuffer[];
              if (chunks.chains) transfer.push(chunks.chains.starts.buffer as ArrayBuffer, chunks.chains.bytes.buffer as ArrayBuffer);
              return pool.run(job, transfer);
            }),
          );
          for (const reply of replies) {
            bytesWritten += reply.bytesWritten;
            progress.bytesDone += reply.bytes;
            for (const [file, uses] of reply.done) completeUses(file, uses);
          }
          for (const reply of replies) {
            if (reply.corrupt) throw new CorruptObjectError(key, reply.corrupt, affected());
            if (reply.failed) throw Object.assign(new Error(reply.failed.message), { code: reply.failed.code, path: reply.failed.path });
          }
          options.onProgress?.({ ...progress });
          return;
        }
        checkWholePack(r, data, affected);
        const corrupt = await writeRange(
          repo.objects.codec,
          data,
          { ...rangeChunks(phase, r.chunks, r.offset, frameOf), deltas },
          { write: writeTo, read: readFrom },
          (bytes) => {
            progress.bytesDone += bytes;
            options.onProgress?.({ ...progress });
          },
          !existing && !deltas,
        );
        if (corrupt) throw new CorruptObjectError(key, corrupt, affected());
      };
      try {
        // Phase after phase: a delta is applied only once the phase before has written its base in place.
        // Phase 0 writes the chunk each live place's chain starts from: its ranges are known before `ready`.
        for (let p = 0; p === 0 || p < phases.length; p++) {
          const ranges = p === 0 ? planFetches(lookup, planOptions, (c) => roots[c] === 1) : planFetches(phases[p]!, planOptions);
          await Promise.all(
            ranges.map((r) =>
              limit(() =>
                runRange(p, r).catch((e: unknown) => {
                  failed ??= e;
                }),
              ),
            ),
          );
          if (failed) break;
          await ready;
        }
      } finally {
        await Promise.all(syncing);
        for (const h of handles.values()) await (await h).close().catch(() => undefined);
      }
      if (failed) throw failed;
      requests += frames?.requests ?? 0;
      rangedRequests += frames?.requests ?? 0;
      bytesFetched += frames?.bytesFetched ?? 0;

      // Hard links once their first names are complete.
      const firstOf = new Map(entries.map((e) => [e.path, e]));
      for (const e of entries) {
        if (e.linkTo === undefined) continue;
        const p = fsPath(pathOf(e));
        await rm(p, { force: true, recursive: true });
        await link(fsPath(pathOf(firstOf.get(e.linkTo)!)), p);
      }
      const warnings: string[] = [];
      await applyMetadata(entries, pathOf, options.restoreOwners ?? process.getuid?.() === 0, warnings);
      await options.beforeLast?.();
      const byPath = new Map(entries.map((e) => [e.path, e]));
      for (const e of entries) {
        if (!lastFiles.has(e.path) || e.type !== 'file') continue;
        await rename(fsPath(pathOf(e)), fsPath(placeOf(e)));
        await fsyncDir(fsPath(dirname(placeOf(e))));
        // The rename touched its directory: give it back the time the backup recorded.
        const parent = byPath.get(e.path.includes('/') ? e.path.slice(0, e.path.lastIndexOf('/')) : '.');
        if (parent) await utimes(fsPath(placeOf(parent)), toTime(parent.mtimeNs), toTime(parent.mtimeNs));
      }
      return { key, manifest, files: progress.filesTotal, bytes: progress.bytesTotal, requests, rangedRequests, bytesFetched, bytesWritten, warnings, removed };
    } catch (e) {
      // Into an empty target, a failed restore leaves only complete files (and directories): no file at full
      // size that is only holes. A retry with --delta resumes from them.
      await creating.catch(() => undefined);
      if (!existing) {
        for (let i = 0; i < entries.length; i++) {
          const e = entries[i]!;
          if (e.type === 'file' && (remaining[i]! > 0 || lastFiles.has(e.path))) await rm(fsPath(pathOf(e)), { force: true }).catch(() => undefined);
        }
      }
      throw e;
    }
  }
}

/** Splits a range's chunks into up to `n` runs of neighbours with about equal bytes to write. */
function splitChunks(lookup: ChunkLookup, chunks: number[], n: number): number[][] {
  const weight = (c: number) => lookup.table.rawLength[c]! * liveUses(lookup, c);
  let total = 0;
  for (const c of chunks) total += weight(c);
  if (n <= 1 || total < MIN_SPLIT_BYTES) return [chunks];
  const parts: number[][] = [[]];
  let acc = 0;
  for (const c of chunks) {
    if (acc >= (total / n) * parts.length && parts.length < n) parts.push([]);
    parts[parts.length - 1]!.push(c);
    acc += weight(c);
  }
  return parts.filter((p) => p.length > 0);
}

function copyOwned(b: Buffer): Buffer {
  const out = Buffer.allocUnsafeSlow(b.length);
  b.copy(out);
  return out;
}
