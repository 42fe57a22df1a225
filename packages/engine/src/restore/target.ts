/**
 * Where a restore writes, prepared and checked before anything is written:
 * manifest paths that stay inside the target, links turned into directories,
 * empty or delta targets, what a delta restore removes and what it keeps.
 */
import { open, readdir, mkdir, rm } from 'node:fs/promises';
import { isAbsolute, join } from 'node:path';
import pLimit from 'p-limit';
import { CorruptObjectError, TargetNotEmptyError } from '../errors.js';
import type { TreeEntry } from '../format/manifest.js';
import { decodeName, fsPath } from '../names.js';
import { readXattrText, RESTORE_MARKER_XATTR, writeXattr } from '../xattrs.js';
import type { Repository } from '../repository/repository.js';
import type { ChunkLookup } from './plan.js';

/** Suffix of a `lastFiles` file while it is being written. */
export const RESTORING_SUFFIX = '.coffer-restoring';

/**
 * Refuses a manifest whose entries could write outside the target: absolute
 * paths, `..`, empty or `.` components, NUL, duplicates, and any entry whose
 * parent is not a directory entry of the same manifest (a symlink `a → /etc`
 * followed by `a/x` would otherwise write into /etc).
 */
export function checkEntryPaths(key: string, entries: readonly TreeEntry[]): void {
  const types = new Map<string, TreeEntry['type']>();
  for (const e of entries) {
    const bad = e.path !== '.' && (isAbsolute(e.path) || e.path.includes('\0') || e.path.split('/').some((p) => p === '..' || p === '.' || p === ''));
    if (bad || typeof e.path !== 'string') throw new CorruptObjectError(key, `manifest entry ${JSON.stringify(e.path)} would escape the restore target`);
    if (types.has(e.path)) throw new CorruptObjectError(key, `manifest lists ${JSON.stringify(e.path)} twice`);
    types.set(e.path, e.type);
  }
  if (entries.length > 0 && types.get('.') !== 'dir') throw new CorruptObjectError(key, 'manifest has no root directory entry');
  const seenFiles = new Set<string>();
  for (const e of entries) {
    if (e.linkTo !== undefined && (e.type !== 'file' || !seenFiles.has(e.linkTo) || (e.chunks?.length ?? 0) > 0)) {
      throw new CorruptObjectError(key, `manifest entry ${JSON.stringify(e.path)} links to ${JSON.stringify(e.linkTo)}, which is not a file listed before it`);
    }
    if (e.type === 'file' && e.linkTo === undefined) seenFiles.add(e.path);
    if (e.path === '.') continue;
    const slash = e.path.lastIndexOf('/');
    const parent = slash < 0 ? '.' : e.path.slice(0, slash);
    if (types.get(parent) !== 'dir') throw new CorruptObjectError(key, `manifest entry ${JSON.stringify(e.path)} lies under ${JSON.stringify(parent)}, which is ${types.has(parent) ? `a ${types.get(parent)}` : 'not listed'}, not a directory`);
  }
}

/** Entries with `linkMap`'s symlinks turned into directories; mapped ones are added to `relocate`. */
export function applyLinkMap(entries: readonly TreeEntry[], linkMap: ReadonlyMap<string, string> | undefined, relocate: Map<string, string>): TreeEntry[] {
  if (!linkMap || linkMap.size === 0) return entries as TreeEntry[];
  return entries.map((e) => {
    const to = linkMap.get(e.path);
    if (to === undefined || e.type !== 'symlink') return e;
    if (to !== 'dir') relocate.set(e.path, to);
    return { path: e.path, type: 'dir', mode: 0o700, uid: e.uid, gid: e.gid, mtimeNs: e.mtimeNs };
  });
}


export async function assertEmptyOrAbsent(dir: string): Promise<void> {
  if (await hasContent(dir)) throw new TargetNotEmptyError(dir);
}

/** Whether `dir` exists and holds anything. */
export async function hasContent(dir: string): Promise<boolean> {
  const names = await readdir(dir).catch((e: NodeJS.ErrnoException) => {
    if (e.code === 'ENOENT') return [] as string[];
    throw e;
  });
  return names.length > 0;
}

/**
 * A delta restore removes whatever the backup does not hold: a files
 * restore goes over a non-empty directory only when an earlier restore of
 * the same source from this repository marked it (or with `force`).
 */
export async function checkFilesDeltaTarget(dir: string, mark: string, source: string): Promise<void> {
  const found = await readXattrText(dir, RESTORE_MARKER_XATTR);
  if (found === mark) return;
  throw new TargetNotEmptyError(
    dir,
    `it is not an earlier restore of ${source} from this repository${found === undefined ? ' (it carries no restore mark)' : ''}, and --delta would remove everything the backup does not hold; pass --force to restore over it anyway (--dry-run lists what it would remove)`,
  );
}

/** Marks a files restore's target; a file system without extended attributes keeps no mark (a later --delta then needs --force). */
export async function writeFilesMark(dir: string, mark: string): Promise<void> {
  await writeXattr(dir, RESTORE_MARKER_XATTR, Buffer.from(mark).toString('base64')).catch((e: Error) => {
    if (!/not (permitted|supported)/i.test(e.message)) throw e;
  });
}


/**
 * Creates the target and its parents. Node's recursive mkdir reports ENOENT
 * where a parent refused the new entry (a read-only file system): the last
 * step is tried once more on its own, so the error says why.
 */
async function makeTarget(dir: string): Promise<void> {
  try {
    await mkdir(dir, { recursive: true, mode: 0o700 });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    await mkdir(dir, { mode: 0o700 });
  }
}

/** Creates the target if absent; returns whether it holds content a delta restore works over. */
export async function prepareTarget(dir: string, delta: boolean): Promise<boolean> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    await makeTarget(dir);
    return false;
  }
  if (names.length > 0 && !delta) throw new TargetNotEmptyError(dir);
  return names.length > 0;
}

/**
 * Delta restore: removes what the backup does not hold, and entries whose
 * type changed (a link where a directory belongs is removed, never followed),
 * in the target and in every relocated directory. Returns what it removed
 * (a directory once, with everything under it); with `dryRun`, what it would.
 */
export async function removeUnlisted(root: string, entries: readonly TreeEntry[], relocate: ReadonlyMap<string, string>, lastFiles: ReadonlySet<string>, marker?: string, dryRun = false): Promise<string[]> {
  const removed: string[] = [];
  const wanted = new Map<string, string>(entries.filter((e) => !relocate.has(e.path)).map((e) => [e.path, e.type]));
  for (const prefix of relocate.keys()) wanted.set(prefix, 'symlink');
  if (marker) for (const at of ['.', ...relocate.keys()]) wanted.set(at === '.' ? marker : `${at}/${marker}`, 'file');
  // A file written last sits under its temporary name until the end.
  for (const p of lastFiles) if (wanted.get(p) === 'file') {
    wanted.delete(p);
    wanted.set(p + RESTORING_SUFFIX, 'file');
  }
  const prune = async (abs: string, rel: string): Promise<void> => {
    const children = await readdir(fsPath(abs), { withFileTypes: true, encoding: 'buffer' }).catch((e: NodeJS.ErrnoException) => {
      if (e.code === 'ENOENT') return [];
      throw e;
    });
    for (const d of children) {
      const name = decodeName(d.name);
      const childRel = rel === '.' ? name : `${rel}/${name}`;
      const type = d.isDirectory() ? 'dir' : d.isSymbolicLink() ? 'symlink' : d.isFile() ? 'file' : 'other';
      if (wanted.get(childRel) !== type) {
        removed.push(childRel);
        if (!dryRun) await rm(fsPath(join(abs, name)), { recursive: true, force: true });
      } else if (type === 'dir') await prune(join(abs, name), childRel);
    }
  };
  await prune(root, '.');
  for (const [prefix, dir] of relocate) await prune(dir, prefix);
  return removed;
}

/** Delta restore: every chunk use whose bytes are already at their offset needs no write. */
export async function dropChunksInPlace(repo: Repository, entries: readonly TreeEntry[], lookup: ChunkLookup, pathOf: (e: TreeEntry) => string): Promise<void> {
  const { table, fileStart, useChunk, useOffset, live } = lookup;
  const limit = pLimit(4);
  await Promise.all(
    entries.map((e, file) =>
      limit(async () => {
        if (fileStart[file] === fileStart[file + 1]) return;
        const fh = await open(fsPath(pathOf(e)), 'r').catch(() => undefined);
        if (!fh) return;
        try {
          const size = (await fh.stat()).size;
          let largest = 1;
          for (let u = fileStart[file]!; u < fileStart[file + 1]!; u++) largest = Math.max(largest, table.rawLength[useChunk[u]!]!);
          const buf = Buffer.allocUnsafe(largest);
          for (let u = fileStart[file]!; u < fileStart[file + 1]!; u++) {
            const c = useChunk[u]!;
            const length = table.rawLength[c]!;
            if (useOffset[u]! + length > size) continue;
            const { bytesRead } = await fh.read(buf, 0, length, useOffset[u]!);
            if (bytesRead === length && repo.objects.codec.id(buf.subarray(0, bytesRead)).equals(table.id(c))) live[u] = 0;
          }
        } finally {
          await fh.close();
        }
      }),
    ),
  );
}

