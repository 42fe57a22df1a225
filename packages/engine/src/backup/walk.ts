/**
 * Walks a directory tree into manifest entries, depth first, names in byte
 * order, so the same tree always yields the same list.
 */
import type { BigIntStats } from 'node:fs';
import { lstat, readdir, readlink } from 'node:fs/promises';
import { join } from 'node:path';
import pLimit from 'p-limit';
import { SourceError } from '../errors.js';
import { decodeName, displayPath, fsPath } from '../names.js';
import { readXattrs, xattrReachable } from '../xattrs.js';
import type { TreeEntry } from '../format/manifest.js';

export interface WalkResult {
  entries: TreeEntry[];
  /** Paths of entries that a backup cannot represent (sockets, devices, FIFOs). */
  skipped: string[];
  /** Where to read an entry from (mounts make this differ from `root/path`). */
  absPath(path: string): string;
}

export type WalkDecision = 'include' | 'exclude' | 'exclude-contents';

export interface WalkOptions {
  /** Leaves entries out, or keeps a directory without its contents. */
  decide?: (relPath: string, isDir: boolean, siblings: ReadonlySet<string>) => WalkDecision;
  /**
   * Symlinks to walk as directories (PostgreSQL tablespaces): relative path →
   * absolute directory. The link itself is recorded too.
   */
  mounts?: ReadonlyMap<string, string>;
}

export async function walkTree(root: string, options: WalkOptions = {}): Promise<WalkResult> {
  const entries: TreeEntry[] = [];
  const skipped: string[] = [];
  const rootStat = await statOrThrow(root, root);
  if (!rootStat.isDirectory()) throw new SourceError(root, 'not a directory');
  entries.push(await withXattrs(baseEntry('.', 'dir', rootStat), root));
  const ctx: WalkContext = { root, entries, skipped, options, mounted: [], linked: new Map() };
  await walkDir(ctx, '');
  const mounted = [...ctx.mounted].sort((a, b) => b[0].length - a[0].length);
  const absPath = (path: string) => {
    for (const [prefix, dir] of mounted) if (path.startsWith(prefix + '/')) return join(dir, ...path.slice(prefix.length + 1).split('/'));
    return join(root, ...path.split('/'));
  };
  return { entries, skipped, absPath };
}

interface WalkContext {
  root: string;
  entries: TreeEntry[];
  skipped: string[];
  options: WalkOptions;
  mounted: [string, string][];
  /** Files with more than one link, by device and inode: the path first seen. */
  linked: Map<string, string>;
}

async function walkDir(ctx: WalkContext, rel: string, absDir?: string): Promise<void> {
  const { entries, skipped, options } = ctx;
  const abs = absDir ?? (rel ? join(ctx.root, rel) : ctx.root);
  let raw: Buffer[];
  try {
    // Names as bytes: one that is not UTF-8 is kept exactly (see names.ts), never dropped.
    raw = await readdir(fsPath(abs), { encoding: 'buffer' });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw new SourceError(displayPath(abs), (e as Error).message, { cause: e });
  }
  raw.sort(Buffer.compare);
  const names = raw.map(decodeName);
  const siblings = new Set(names);
  // The entries are stat'ed several at a time (each lstat is a trip through libuv's thread pool, and one
  // after another they were most of a walk's time), then handled one by one in name order as before.
  const stats = await lstatAll(names.map((name) => join(abs, name)));
  for (const [i, name] of names.entries()) {
    const childRel = rel ? `${rel}/${name}` : name;
    const childAbs = join(abs, name);
    const st = stats[i];
    if (st === undefined) continue; // vanished since readdir
    if (st instanceof Error) throw new SourceError(displayPath(childAbs), st.message, { cause: st });
    const mount = options.mounts?.get(childRel);
    const decision = options.decide?.(childRel, st.isDirectory() || mount !== undefined, siblings) ?? 'include';
    if (decision === 'exclude') continue;
    if (mount !== undefined) {
      const target = await statOrThrow(mount, mount);
      if (!target.isDirectory()) throw new SourceError(mount, 'tablespace location is not a directory');
      entries.push({ ...baseEntry(childRel, 'dir', target), target: mount });
      ctx.mounted.push([childRel, mount]);
      await walkDir(ctx, childRel, mount);
    } else if (st.isDirectory()) {
      entries.push(await withXattrs(baseEntry(childRel, 'dir', st), childAbs));
      if (decision !== 'exclude-contents') await walkDir(ctx, childRel, childAbs);
    } else if (st.isFile()) {
      const inode = `${st.dev}:${st.ino}`;
      const first = st.nlink > 1n ? ctx.linked.get(inode) : undefined;
      if (first !== undefined) {
        // Another name of a file already listed: restored as a hard link to it, its bytes read once. When the
        // first name is not UTF-8 (no attributes reachable through it), this one carries the file's attributes.
        const linked: TreeEntry = { ...baseEntry(childRel, 'file', st), size: Number(st.size), linkTo: first };
        entries.push(xattrReachable(first) ? linked : await withXattrs(linked, childAbs));
        continue;
      }
      if (st.nlink > 1n) ctx.linked.set(inode, childRel);
      entries.push(await withXattrs({ ...baseEntry(childRel, 'file', st), size: Number(st.size), ino: Number(st.ino), ctimeNs: st.ctimeNs.toString(), chunks: [] }, childAbs));
    } else if (st.isSymbolicLink()) {
      let target: string;
      try {
        target = decodeName(await readlink(fsPath(childAbs), { encoding: 'buffer' }));
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'ENOENT') continue;
        throw new SourceError(displayPath(childAbs), (e as Error).message, { cause: e });
      }
      entries.push({ ...baseEntry(childRel, 'symlink', st), target });
    } else {
      skipped.push(childRel);
    }
  }
}

/** Entries stat'ed at once per directory: enough to keep the thread pool's four threads busy. */
const STAT_CONCURRENCY = 16;

/** Each path's lstat, undefined when it no longer exists, or the error that stopped it; in the paths' order. */
function lstatAll(paths: readonly string[]): Promise<(BigIntStats | Error | undefined)[]> {
  const limit = pLimit(STAT_CONCURRENCY);
  return Promise.all(
    paths.map((path) =>
      limit(() => lstat(fsPath(path), { bigint: true }).catch((e: NodeJS.ErrnoException) => (e.code === 'ENOENT' ? undefined : e))),
    ),
  );
}

/** The entry with its extended attributes (see `xattrs.ts`). */
async function withXattrs(e: TreeEntry, abs: string): Promise<TreeEntry> {
  const xattrs = await readXattrs(abs).catch((err: Error) => {
    // A file system without extended attributes has none to keep.
    if (/not supported/i.test(err.message)) return {};
    throw new SourceError(displayPath(abs), `extended attributes: ${err.message}`, { cause: err });
  });
  return Object.keys(xattrs).length === 0 ? e : { ...e, xattrs };
}

async function statOrThrow(abs: string, label: string) {
  try {
    return await lstat(abs, { bigint: true });
  } catch (e) {
    throw new SourceError(label, (e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such directory' : (e as Error).message, { cause: e });
  }
}

interface BigStat {
  mode: bigint;
  uid: bigint;
  gid: bigint;
  mtimeNs: bigint;
}

function baseEntry(path: string, type: TreeEntry['type'], st: BigStat): TreeEntry {
  return { path, type, mode: Number(st.mode & 0o7777n), uid: Number(st.uid), gid: Number(st.gid), mtimeNs: st.mtimeNs.toString() };
}
