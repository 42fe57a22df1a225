/**
 * What a restore applies once the bytes are in place: owners, modes,
 * extended attributes and times, deepest directories last, each directory
 * fsynced.
 */
import { chmod, chown, lchown, lutimes, open, readlink, utimes } from 'node:fs/promises';
import pLimit from 'p-limit';
import type { TreeEntry } from '../format/manifest.js';
import { decodeName, displayPath, fsPath } from '../names.js';
import { writeXattr } from '../xattrs.js';

/**
 * utimes takes seconds as a double, which resolves ~0.24 µs at today's epoch
 * values and is truncated to ns by the kernel call: aiming at the middle of
 * the microsecond makes the restored time exact to the microsecond.
 */
/** File-system calls in flight while applying metadata (each waits on the thread pool, not the CPU). */
const FS_PARALLEL = 16;

export function toTime(ns: string): number {
  const big = BigInt(ns);
  return Number(big / 1_000_000_000n) + (Number((big % 1_000_000_000n) / 1000n) + 0.5) / 1e6;
}

export async function applyMetadata(entries: readonly TreeEntry[], pathOf: (e: TreeEntry) => string, owners: boolean, warnings: string[]): Promise<void> {
  const limit = pLimit(FS_PARALLEL);
  await Promise.all(
    entries.map((e) =>
      limit(async () => {
        const p = fsPath(pathOf(e));
        const t = toTime(e.mtimeNs);
        if (e.type === 'file') {
          if (owners) await chown(p, e.uid, e.gid);
          await chmod(p, e.mode);
          await setXattrs(e, pathOf(e), warnings);
          await utimes(p, t, t);
        } else if (e.type === 'symlink') {
          if (owners) await lchown(p, e.uid, e.gid);
          await lutimes(p, t, t);
        }
      }),
    ),
  );
  // Deepest directories first: setting a child's times changes nothing above, but creating entries did.
  const dirs = entries.filter((e) => e.type === 'dir');
  for (const level of [...new Set(dirs.map((e) => depth(e.path)))].sort((a, b) => b - a)) {
    await Promise.all(
      dirs
        .filter((e) => depth(e.path) === level)
        .map((e) =>
          limit(async () => {
            const p = fsPath(pathOf(e));
            if (owners) await chown(p, e.uid, e.gid);
            await chmod(p, e.mode);
            await setXattrs(e, pathOf(e), warnings);
            const fh = await open(p, 'r');
            try {
              await fh.sync();
            } finally {
              await fh.close();
            }
            const t = toTime(e.mtimeNs);
            await utimes(p, t, t);
          }),
        ),
    );
  }
}

function depth(path: string): number {
  return path === '.' ? 0 : path.split('/').length;
}

/**
 * Sets an entry's extended attributes. Those this user or file system may
 * not set (security.*, trusted.* without privileges; no xattr support) become
 * warnings; any other failure stops the restore.
 */
async function setXattrs(e: TreeEntry, path: string, warnings: string[]): Promise<void> {
  if (!e.xattrs) return;
  for (const [name, value] of Object.entries(e.xattrs)) {
    try {
      await writeXattr(path, name, value);
    } catch (err) {
      if (/not (permitted|supported)|permission denied/i.test((err as Error).message)) warnings.push(`${displayPath(e.path)}: extended attribute ${name} not restored (${(err as Error).message})`);
      else throw err;
    }
  }
}

export async function readLink(p: string | Buffer): Promise<string | undefined> {
  return readlink(p, { encoding: 'buffer' }).then(decodeName, () => undefined);
}

