/** Small files made durable: written, fsynced, and their directory entry fsynced. Errors from fsync are final, never retried or ignored. */
import { randomBytes } from 'node:crypto';
import { constants as fsc } from 'node:fs';
import { open, rename, rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

export async function fsyncDir(dir: string | Buffer): Promise<void> {
  await fsyncAt(dir, 'r');
}

/** Makes a file written through other descriptors durable; never through a symbolic link (`O_NOFOLLOW`). */
export async function fsyncFile(path: string | Buffer): Promise<void> {
  await fsyncAt(path, fsc.O_RDWR | fsc.O_NOFOLLOW);
}

async function fsyncAt(path: string | Buffer, flags: string | number): Promise<void> {
  const fh = await open(path, flags);
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** Names of temporary files `writeDurably` leaves only when the process dies mid-write. */
export const TMP_SUFFIX = '.coffer-tmp';

/** Replaces `path` with `content` atomically (temporary file, fsync, rename, fsync of the directory). */
export async function writeDurably(path: string, content: string | Uint8Array, mode = 0o600): Promise<void> {
  const tmp = join(dirname(path), `.${basename(path)}.${randomBytes(4).toString('hex')}${TMP_SUFFIX}`);
  try {
    const fh = await open(tmp, 'w', mode);
    try {
      await fh.writeFile(content);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, path);
  } catch (e) {
    await rm(tmp, { force: true });
    throw e;
  }
  await fsyncDir(dirname(path));
}
