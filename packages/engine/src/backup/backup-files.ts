/**
 * A `files` backup of one directory tree. Files unchanged since the parent
 * backup (same size, mtime, ctime and inode, with all chunks still indexed)
 * reuse its chunk list without being read; the rest go through the chunk
 * pipeline, inline or on worker threads. The manifest is written last.
 */
import { lstat } from 'node:fs/promises';
import { availableParallelism, hostname } from 'node:os';
import { resolve } from 'node:path';
import pLimit from 'p-limit';
import { CofferError, InvalidArgumentError, SourceError } from '../errors.js';
import { fsPath } from '../names.js';
import { FORMAT_VERSION } from '../format/config.js';
import { backupLabel, PACK_PREFIX, packKey } from '../format/keys-layout.js';
import { chunkIdsOf, setChunkIdBytes, type AuditAnchor, type BackupManifest, type BackupStats, type BackupSummary, type TreeEntry } from '../format/manifest.js';
import { ID_BYTES } from '../format/chunk-codec.js';
import { IdTable } from '../repository/id-table.js';
import { ChunkIndex } from '../repository/chunk-index.js';
import type { Repository } from '../repository/repository.js';
import { findNewest } from '../repository/catalogue.js';
import { readDamage } from '../repository/damage.js';
import { condemnedPacks } from '../repository/condemned.js';
import { withLease, type Lease } from '../repository/leases.js';
import type { Chunking } from '../chunking/chunker.js';
import { ReadPacer } from '../content/read-pacer.js';
import { chunkFile, noBases, type ChunkSink, type FileChunks, type FileRange } from '../content/chunk-pipeline.js';
import type { ReadCheckSpec } from '../content/read-check.js';
import { PackWriter } from '../content/pack-writer.js';
import { PageBases } from './page-bases.js';
import { walkTree, type WalkDecision, type WalkOptions } from './walk.js';
import { excludeMatcher } from './exclude.js';
import { ChunkWorkerPool } from '../content/worker-pool.js';

export interface BackupProgress {
  filesTotal: number;
  filesDone: number;
  bytesTotal: number;
  bytesDone: number;
  newBytes: number;
}

export interface BackupFilesOptions {
  /** Compare against this backup (manifest key), the latest backup of the same source (`auto`, default), or none. */
  parent?: string | 'auto' | 'none';
  /** Worker threads for chunking; 0 chunks on the calling thread. Default: one per core when the data is large. */
  workers?: number;
  tags?: string[];
  onProgress?: (p: BackupProgress) => void;
  /** Files backups: leave out entries matching these patterns (see `exclude.ts`). */
  exclude?: readonly string[];
  /** Time-to-live of the backup's lease (default 60 s): how long garbage collection waits for a backup that stopped answering. */
  leaseTtlMs?: number;
  /** Read at most this many bytes per second from the source, all threads together (`--max-rate`): the server's I/O stays the application's. */
  maxBytesPerSecond?: number;
  /** The audit record that will tell of this backup (its process's chain and the record's number), named in the manifest. */
  audit?: AuditAnchor;
}

export interface BackupResult {
  key: string;
  manifest: BackupManifest;
}

/** What a kind of backup supplies to the tree backup. */
export interface TreeSource {
  kind: BackupManifest['kind'];
  /** Absolute directory walked. */
  root: string;
  walk?: WalkOptions;
  /** A check to run on a file's bytes as they are read (PostgreSQL's page checksums), if any. */
  readCheck?: (entry: TreeEntry) => ReadCheckSpec | undefined;
  /** PostgreSQL relation files, which the config's `relationChunker` cuts (when it has one). */
  isRelation?: (entry: TreeEntry) => boolean;
  /** Re-read files that change while they are read, and report those that keep changing (files backups). */
  checkStable?: boolean;
  /** Whether a previous backup may serve as this one's parent. */
  isParent: (b: BackupSummary) => boolean;
  /** Runs after the data is stored and before the manifest is written (PostgreSQL: pg_backup_stop). */
  finish?: () => Promise<Pick<BackupManifest, 'postgres' | 'stanza'>>;
}

/** Below this much data to read, worker start-up costs more than it saves. */
const WORKER_THRESHOLD = 32 * 1024 * 1024;

export async function backupFiles(repo: Repository, sourceDir: string, options: BackupFilesOptions = {}): Promise<BackupResult> {
  const root = resolve(sourceDir);
  const excluded = excludeMatcher(options.exclude ?? []);
  // A repository inside the tree it backs up would be backed up into itself, growing with every run.
  const local = repo.objects.localRoot;
  const store = local !== undefined ? resolve(local) : undefined;
  const inside = store !== undefined && (store + '/').startsWith(root + '/') && store !== root ? store.slice(root.length + 1) : undefined;
  const decide = (relPath: string): WalkDecision => (relPath === inside || excluded(relPath) ? 'exclude' : 'include');
  return backupTree(repo, { kind: 'files', root, checkStable: true, walk: { decide }, isParent: (m) => m.kind === 'files' && m.source === root }, options);
}

/** Backs up a directory tree as described by `src`; the engine of every backup kind. */
export async function backupTree(repo: Repository, src: TreeSource, options: BackupFilesOptions = {}): Promise<BackupResult> {
  const startedAt = new Date();
  const source = src.root;
  // Workers may start before the pack writers exist: they reach them through this indirection.
  let target: ChunkSink | undefined;
  const sink: ChunkSink = {
    claim: (ids, bytes, pages) => target!.claim(ids, bytes, pages),
    store: (blobs, pages) => target!.store(blobs, pages),
    bases: (place, blocks) => target!.bases?.(place, blocks) ?? Promise.resolve(noBases(blocks.length)),
  };
  const cores = Math.min(availableParallelism(), 4);
  // A data directory is large: its workers start loading now, while the index and the parent are read.
  const pacer = options.maxBytesPerSecond !== undefined ? new ReadPacer(options.maxBytesPerSecond) : undefined;
  let pool = options.workers === undefined && src.kind === 'postgres' ? new ChunkWorkerPool(repo, cores, sink, pacer) : undefined;
  // The parent is looked up while the lease is taken and the index read: which backup it is depends on
  // neither, and what may be deduplicated against is settled by the condemned packs read under the lease.
  const parentLookup = findParent(repo, src.isParent, options.parent ?? 'auto');
  parentLookup.catch(() => undefined);
  // So is the source walked: the walk reads only the source (a PostgreSQL backup has begun on the server by now).
  const walked = walkTree(source, src.walk);
  walked.catch(() => undefined);
  try {
    return await withLease(repo, { purpose: 'backup', ...(options.leaseTtlMs !== undefined ? { ttlMs: options.leaseTtlMs } : {}) }, backupWith);
  } finally {
    await pool?.close();
  }

  async function backupWith(lease: Lease): Promise<BackupResult> {
    // Relation pages are compared with the parent backup's pages only, so neither the index held here
    // nor the time to load it grows with the repository's history of pages.
    // After the lease was taken and before the index is read (docs/FORMAT.md, "Garbage collection"):
    // chunks only a running garbage collection's condemned packs hold are stored again.
    const condemned = await condemnedPacks(repo);
    const index = await repo.loadIndex({ pages: false });
    if (condemned.size > 0) index.dropPacks((sha) => condemned.has(sha));
    const parentChoice = options.parent ?? 'auto';
    // Without a parent, nothing is taken on trust: chunks whose pack is missing are stored again (before a
    // repair has taken them out of the index).
    if (parentChoice === 'none') {
      const packs = new Set((await repo.objects.list(PACK_PREFIX)).map((o) => o.key));
      index.dropPacks((sha) => !packs.has(packKey(sha)));
    }
    const parent = await parentLookup;
    const parentPages = pageSet(parent?.manifest);
    // Changed pages are stored as deltas against the parent's (format 3).
    const depth = repo.config.pageDeltas?.depth ?? 0;
    const pageBases = parent && depth > 0 && parentPages.count > 0 ? new PageBases(repo, parent, condemned, depth) : undefined;
    pageBases?.prepare();
    const known = (id: Uint8Array) => parentPages.has(id);
    const { entries, skipped, absPath } = await walked;

    const parentFiles = new Map<string, TreeEntry>();
    for (const e of parent?.manifest.entries ?? []) if (e.type === 'file') parentFiles.set(e.path, e);
    // A file's mtime only proves it unchanged if it was set well before the parent backup began:
    // a write in the same clock tick as the parent's read could leave the mtime as it was.
    const trustBeforeNs = parent ? BigInt(Date.parse(parent.manifest.startedAt) - 1000) * 1_000_000n : 0n;

    const toRead: TreeEntry[] = [];
    let unchangedFiles = 0;
    for (const e of entries) {
      // A hard link's bytes are its first name's.
      if (e.type !== 'file' || e.linkTo !== undefined) continue;
      const prev = parentFiles.get(e.path);
      // A file found damaged last time is read again: its mtime says nothing about its pages.
      if (prev && prev.damagedBlocks === undefined && unchanged(prev, e, (ids, at) => (prev.chunking === 'fixed' ? parentPages.has(ids, at) : index.has(ids.subarray(at, at + ID_BYTES))), trustBeforeNs)) {
        setChunkIdBytes(e, chunkIdsOf(prev));
        if (prev.chunking) e.chunking = prev.chunking;
        unchangedFiles++;
      } else toRead.push(e);
    }

    const bytesToRead = toRead.reduce((n, e) => n + (e.size ?? 0), 0);
    const bytesTotal = entries.reduce((n, e) => n + (e.size ?? 0), 0);
    const progress: BackupProgress = {
      filesTotal: entries.filter((e) => e.type === 'file').length,
      filesDone: unchangedFiles,
      bytesTotal,
      bytesDone: bytesTotal - bytesToRead,
      newBytes: 0,
    };
    let deltaPages = 0;
    const beforeIndex = () => lease.prove('writing an index object');
    const writer = new PackWriter(repo, index, { beforeIndex });
    const pageWriter = new PackWriter(repo, new ChunkIndex(), { pages: true, known, beforeIndex });
    const writers = [writer, pageWriter];
    const newBytes = () => writer.stats.newBytes + pageWriter.stats.newBytes;
    target = {
      claim: async (ids, bytes, pages) => {
        progress.bytesDone += bytes;
        progress.newBytes = newBytes();
        options.onProgress?.({ ...progress });
        return (pages ? pageWriter : writer).claim(ids);
      },
      store: (blobs, pages) => {
        for (const b of blobs) for (const c of b.chunks) if (c.base) deltaPages++;
        return (pages ? pageWriter : writer).add(blobs);
      },
      ...(pageBases ? { bases: (place: string, blocks: number[]) => pageBases.bases(place, blocks) } : {}),
    };
    const workers = options.workers ?? (bytesToRead >= WORKER_THRESHOLD ? cores : 0);
    if (workers === 0 && pool) {
      await pool.close();
      pool = undefined;
    }
    pool ??= workers > 0 ? new ChunkWorkerPool(repo, workers, sink, pacer) : undefined;
    const { chunker, relationChunker } = repo.config;
    const chunkingOf = (e: TreeEntry): Chunking => (relationChunker && src.isRelation?.(e) ? relationChunker : chunker);
    const vanished: string[] = [];
    const changed: string[] = [];
    const damaged: string[] = [];
    let extra: Partial<Pick<BackupManifest, 'postgres' | 'stanza'>> = {};
    try {
      const limit = pLimit(Math.max(1, workers * 2));
      // Largest files first: their parts keep every worker busy from the start, and small files fill the end.
      const bySize = [...toRead].sort((a, b) => (b.size ?? 0) - (a.size ?? 0));
      await Promise.all(
        bySize.map(async (e) => {
          const abs = absPath(e.path);
          const readCheck = src.readCheck?.(e);
          const chunking = chunkingOf(e);
          // Large files cut at fixed offsets are read in parts by several threads at once; the parts join in order.
          const ranges = pool ? splitRanges(e.size ?? 0, chunking) : [undefined];
          let parts: FileChunks[] = [];
          try {
            // A file that changes while it is read would be stored torn: it is read again (the stat it is
            // compared with moves on each time), a few times, and then reported as changed during the backup.
            // PostgreSQL files are exempt: WAL replay repairs whatever a base backup read mid-write.
            for (let attempt = 0; ; attempt++) {
              // A file of pages the parent held too may store its changed pages as deltas against the parent's.
              const place = pageBases && chunking.algorithm === 'fixed' && parentFiles.get(e.path)?.chunking === 'fixed' ? e.path : undefined;
              parts = await Promise.all(ranges.map((range) => limit(() => (pool ? pool.run(abs, chunking, readCheck, range, place) : chunkFile(abs, chunking, repo.objects.codec, sink, readCheck, range, pacer, place)))));
              if (!src.checkStable) break;
              const now = await lstat(fsPath(abs), { bigint: true });
              const readBytes = parts.reduce((n, p) => n + p.size, 0);
              const stable = now.isFile() && Number(now.size) === e.size && now.mtimeNs.toString() === e.mtimeNs && now.ctimeNs.toString() === e.ctimeNs && Number(now.ino) === e.ino && readBytes === e.size;
              if (stable) break;
              e.size = Number(now.size);
              e.mtimeNs = now.mtimeNs.toString();
              e.ctimeNs = now.ctimeNs.toString();
              e.ino = Number(now.ino);
              e.mode = Number(now.mode & 0o7777n);
              if (attempt === MAX_REREADS) {
                changed.push(e.path);
                break;
              }
            }
          } catch (err) {
            const code = (err as NodeJS.ErrnoException).code;
            if (code === 'ENOENT' && !(err instanceof CofferError)) {
              vanished.push(e.path);
              return;
            }
            if (code && !(err instanceof CofferError)) throw new SourceError(abs, (err as Error).message, { cause: err });
            throw err;
          }
          // A part that ended early met the end of the file: what follows it was read after a truncation and is dropped.
          const short = parts.findIndex((p, i) => ranges[i]?.length !== undefined && p.size < ranges[i]!.length!);
          const kept = short < 0 ? parts : parts.slice(0, short + 1);
          setChunkIdBytes(e, kept.length === 1 ? kept[0]!.ids : Buffer.concat(kept.map((p) => p.ids)));
          e.size = kept.reduce((n, p) => n + p.size, 0);
          if (chunking.algorithm === 'fixed') e.chunking = 'fixed';
          const bad = kept.flatMap((p) => p.damaged ?? []);
          if (bad.length > 0) {
            e.damagedBlocks = [...new Set(bad)].sort((a, b) => a - b);
            damaged.push(e.path);
          }
          progress.filesDone++;
          options.onProgress?.({ ...progress });
        }),
      );
      // Every file is read: the source closes its side (PostgreSQL: stop the backup, wait for its WAL) while
      // the last packs and index objects are written. The manifest comes after both.
      const [written, finished] = await Promise.allSettled([Promise.all(writers.map((w) => w.finish())), src.finish?.()]);
      if (written.status === 'rejected') throw written.reason;
      if (finished.status === 'rejected') throw finished.reason;
      extra = finished.value ?? {};
    } catch (e) {
      for (const w of writers) await w.abandon();
      throw e;
    } finally {
      await pool?.close();
      pool = undefined;
    }

    const kept = vanished.length ? entries.filter((e) => !vanished.includes(e.path)) : entries;
    const stats: BackupStats = {
      files: kept.filter((e) => e.type === 'file').length,
      dirs: kept.filter((e) => e.type === 'dir').length,
      symlinks: kept.filter((e) => e.type === 'symlink').length,
      bytes: kept.reduce((n, e) => n + (e.linkTo === undefined ? (e.size ?? 0) : 0), 0),
      unchangedFiles,
      newChunks: writer.stats.newChunks + pageWriter.stats.newChunks,
      newBytes: newBytes(),
      storedBytes: writer.stats.storedBytes + pageWriter.stats.storedBytes,
      ...(deltaPages > 0 ? { deltaPages } : {}),
      skipped: [...skipped, ...vanished],
      ...(changed.length ? { changed } : {}),
      ...(damaged.length ? { damaged: damaged.sort(), damagedBlocks: kept.reduce((n, e) => n + (e.damagedBlocks?.length ?? 0), 0) } : {}),
    };
    const manifest: BackupManifest = {
      format: FORMAT_VERSION,
      kind: src.kind,
      label: backupLabel(startedAt),
      startedAt: startedAt.toISOString(),
      finishedAt: new Date().toISOString(),
      hostname: hostname(),
      source,
      ...(parent ? { parent: parent.key } : {}),
      tags: options.tags ?? [],
      stats,
      entries: kept,
      ...extra,
      ...(options.audit ? { audit: options.audit } : {}),
    };
    lease.prove(`writing the manifest of backup ${manifest.label}`);
    const key = await repo.writeManifest(manifest, { committed: () => lease.release() });
    return { key, manifest };
  }
}

/** Reads of a file that keeps changing before it is reported as changed during the backup. */
const MAX_REREADS = 3;

/** Bytes per part when a file is split between threads (rounded up to whole chunks). */
const SPLIT_BYTES = 32 * 1024 * 1024;

function splitRanges(size: number, chunking: Chunking): (FileRange | undefined)[] {
  if (chunking.algorithm !== 'fixed' || size <= SPLIT_BYTES * 1.5) return [undefined];
  const step = Math.ceil(SPLIT_BYTES / chunking.size) * chunking.size;
  const ranges: FileRange[] = [];
  for (let start = 0; start + step < size; start += step) ranges.push({ start, length: step });
  // The last part reads to the end, however far the file has grown since it was listed.
  ranges.push({ start: ranges.length * step });
  return ranges;
}

function unchanged(prev: TreeEntry, cur: TreeEntry, stored: (ids: Buffer, at: number) => boolean, trustBeforeNs: bigint): boolean {
  if (BigInt(prev.mtimeNs) >= trustBeforeNs || prev.size !== cur.size || prev.mtimeNs !== cur.mtimeNs || prev.ctimeNs !== cur.ctimeNs || prev.ino !== cur.ino) return false;
  const ids = chunkIdsOf(prev);
  for (let at = 0; at < ids.length; at += ID_BYTES) if (!stored(ids, at)) return false;
  return true;
}

/** The pages of a backup's page-chunked files: what a backup of pages compares with instead of the repository's index. */
function pageSet(manifest: BackupManifest | undefined): IdTable {
  const lists = (manifest?.entries ?? []).filter((e) => e.chunking === 'fixed').map(chunkIdsOf);
  const table = new IdTable(lists.reduce((n, ids) => n + ids.length / ID_BYTES, 0));
  for (const ids of lists) for (let at = 0; at < ids.length; at += ID_BYTES) table.addBytes(ids, at);
  return table;
}

/** The parent: named, or the newest backup of the same source, found in the catalogue; only its manifest is read. */
async function findParent(repo: Repository, isParent: (b: BackupSummary) => boolean, parent: string): Promise<{ key: string; manifest: BackupManifest } | undefined> {
  if (parent === 'none') return undefined;
  // A backup repair found incomplete is never a parent: what it lacks is read and stored afresh.
  const incomplete = new Set((await readDamage(repo))?.incomplete ?? []);
  if (parent !== 'auto') {
    const named = await repo.resolveBackup(parent);
    if (incomplete.has(named.key)) throw new InvalidArgumentError('--parent', `backup ${named.key} cannot be restored in full (coffer repair found chunks missing): take another parent, or none`);
    return named;
  }
  const found = await findNewest(repo, (b) => isParent(b) && !incomplete.has(b.key));
  return found ? { key: found.key, manifest: await repo.readManifest(found.key) } : undefined;
}
