/**
 * Walks a directory tree into manifest entries, depth first, names in byte
 * order, so the same tree always yields the same list.
 */
import { lstat, readdir, readlink } from 'node:fs/promises';
import { join } from 'node:path';
import { SourceError } from '../errors.js';
import type { TreeEntry } from '../format/manifest.js';

export interface WalkResult {
  entries: TreeEntry[];
  /** Paths of entries that a backup cannot represent (sockets, devices, FIFOs). */
  skipped: string[];
}

export async function walkTree(root: string): Promise<WalkResult> {
  const entries: TreeEntry[] = [];
  const skipped: string[] = [];
  const rootStat = await statOrThrow(root, root);
  if (!rootStat.isDirectory()) throw new SourceError(root, 'not a directory');
  entries.push(baseEntry('.', 'dir', rootStat));
  await walkDir(root, '', entries, skipped);
  return { entries, skipped };
}

async function walkDir(root: string, rel: string, entries: TreeEntry[], skipped: string[]): Promise<void> {
  const abs = rel ? join(root, rel) : root;
  let names: string[];
  try {
    names = await readdir(abs);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw new SourceError(abs, (e as Error).message, { cause: e });
  }
  names.sort((a, b) => (Buffer.compare(Buffer.from(a), Buffer.from(b))));
  for (const name of names) {
    const childRel = rel ? `${rel}/${name}` : name;
    const childAbs = join(abs, name);
    let st;
    try {
      st = await lstat(childAbs, { bigint: true });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') continue; // vanished since readdir
      throw new SourceError(childAbs, (e as Error).message, { cause: e });
    }
    if (st.isDirectory()) {
      entries.push(baseEntry(childRel, 'dir', st));
      await walkDir(root, childRel, entries, skipped);
    } else if (st.isFile()) {
      entries.push({ ...baseEntry(childRel, 'file', st), size: Number(st.size), ino: Number(st.ino), ctimeNs: st.ctimeNs.toString(), chunks: [] });
    } else if (st.isSymbolicLink()) {
      let target: string;
      try {
        target = await readlink(childAbs);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'ENOENT') continue;
        throw new SourceError(childAbs, (e as Error).message, { cause: e });
      }
      entries.push({ ...baseEntry(childRel, 'symlink', st), target });
    } else {
      skipped.push(childRel);
    }
  }
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
