import { randomBytes } from 'node:crypto';
import { constants as fsc } from 'node:fs';
import { mkdir, open, opendir, readdir, readFile, rm, stat, unlink, link, type FileHandle } from 'node:fs/promises';
import { dirname, join, sep } from 'node:path';
import { pathToFileURL } from 'node:url';
import { bytesEqual } from '../bytes.js';
import { fsyncDir } from '../durable.js';
import { CofferError, InvalidArgumentError, MissingObjectError, NoSpaceError, ObjectConflictError, PermissionDeniedError, StoreUnavailableError } from '../errors.js';
import { assertValidKey, type ByteRange, type ObjectInfo, type ObjectStore, type PutOutcome, type StoreProperties } from './object-store.js';
import { checkRange } from './range.js';

/** Scratch area inside the store root for half-written objects; never listed. */
const TMP_DIR = '.tmp';

/** A temporary file this old was left by a writer that died (a put takes seconds): removed on the next put. */
const STALE_TMP_MS = 60 * 60 * 1000;

/**
 * A store in a local directory. A put writes a temporary file, fsyncs it, then
 * hard-links it to its final name: `link(2)` fails with EEXIST instead of
 * replacing, which gives an atomic create-if-absent, and a crash at any moment
 * leaves at worst a stray file under `.tmp/` that no listing returns (the
 * first put of each FileStore removes those older than an hour). Every
 * directory the put creates is fsync'd in its parent, and the directory
 * holding the new name is fsync'd, before the put resolves; a delete syncs
 * the directory it removed the name from.
 */
export class FileStore implements ObjectStore {
  readonly properties: StoreProperties;
  readonly root: string;
  private cleaned: Promise<void> | undefined;

  constructor(root: string) {
    this.root = root;
    this.properties = { connections: 8, location: pathToFileURL(root).href };
  }

  private path(key: string): string {
    assertValidKey(key);
    return join(this.root, ...key.split('/'));
  }

  async put(key: string, data: Uint8Array): Promise<PutOutcome> {
    const finalPath = this.path(key);
    const tmpDir = join(this.root, TMP_DIR);
    const tmpPath = join(tmpDir, `${randomBytes(12).toString('hex')}.part`);
    try {
      await mkdir(tmpDir, { recursive: true });
      await (this.cleaned ??= removeStale(tmpDir));
      const fh = await open(tmpPath, fsc.O_CREAT | fsc.O_EXCL | fsc.O_WRONLY, 0o644);
      try {
        await fh.writeFile(data);
        await fh.sync();
      } finally {
        await fh.close();
      }
      const dir = dirname(finalPath);
      const created = await mkdir(dir, { recursive: true });
      // A new directory's name lives in its parent: without this a crash could lose the directory, and with it the object.
      if (created !== undefined) for (let d = dir; ; d = dirname(d)) {
        await fsyncDir(dirname(d));
        if (d === created || d.length <= created.length) break;
      }
      try {
        await link(tmpPath, finalPath);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
        const existing = await readFile(finalPath);
        if (bytesEqual(existing, data)) return 'existed';
        throw new ObjectConflictError(key);
      }
      await fsyncDir(dir);
      return 'created';
    } catch (e) {
      if (e instanceof ObjectConflictError) throw e;
      throw this.writeFailed(key, finalPath, e);
    } finally {
      await unlink(tmpPath).catch(() => undefined);
    }
  }

  async get(key: string, range?: ByteRange): Promise<Uint8Array> {
    const fh = await this.openForRead(key);
    try {
      if (!range) return await fh.readFile();
      const { size } = await fh.stat();
      checkRange(key, size, range);
      return await readFully(key, fh, Buffer.allocUnsafe(range.length), range.offset);
    } catch (e) {
      throw this.readFailed(key, e);
    } finally {
      await fh.close();
    }
  }

  /** A write or delete that failed: a full or read-only repository disk is the operator's to fix, and says so by its own status. */
  private writeFailed(key: string, path: string, e: unknown): Error {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOSPC' || code === 'EDQUOT') return new NoSpaceError(path, { cause: e });
    if (code === 'EROFS' || code === 'EACCES' || code === 'EPERM') return new PermissionDeniedError(path, code === 'EROFS' ? 'read-only file system' : code, { cause: e });
    return new StoreUnavailableError(key, `write failed under ${this.root}: ${(e as Error).message}`, { cause: e });
  }

  /** A read that failed after the object was opened (a directory where a file belongs, an I/O error): typed, naming the object. */
  private readFailed(key: string, e: unknown): Error {
    if (e instanceof CofferError) return e;
    return new StoreUnavailableError(key, `read failed under ${this.root}: ${(e as Error).message}`, { cause: e });
  }

  private async openForRead(key: string): Promise<FileHandle> {
    try {
      return await open(this.path(key), 'r');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw new MissingObjectError(key);
      throw new StoreUnavailableError(key, (e as Error).message, { cause: e });
    }
  }

  async head(key: string): Promise<ObjectInfo | undefined> {
    try {
      const s = await stat(this.path(key));
      return s.isFile() ? { key, size: s.size, modified: s.mtime } : undefined;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT' || (e as NodeJS.ErrnoException).code === 'ENOTDIR') return undefined;
      throw new StoreUnavailableError(key, (e as Error).message, { cause: e });
    }
  }

  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    // Walk only the directories that can hold keys with this prefix.
    const slash = prefix.lastIndexOf('/');
    const baseKey = slash >= 0 ? prefix.slice(0, slash) : '';
    yield* this.walk(baseKey, prefix);
  }

  private async *walk(dirKey: string, prefix: string): AsyncIterable<ObjectInfo> {
    const dirPath = dirKey ? join(this.root, ...dirKey.split('/')) : this.root;
    let dir;
    try {
      dir = await opendir(dirPath);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') return;
      throw new StoreUnavailableError(dirKey || '/', (e as Error).message, { cause: e });
    }
    for await (const entry of dir) {
      if (!dirKey && entry.name === TMP_DIR) continue;
      const key = dirKey ? `${dirKey}/${entry.name}` : entry.name;
      if (entry.isDirectory()) {
        if (key.startsWith(prefix) || prefix.startsWith(key + '/')) yield* this.walk(key, prefix);
      } else if (entry.isFile() && key.startsWith(prefix)) {
        const s = await stat(join(dirPath, entry.name)).catch(() => undefined);
        if (s) yield { key, size: s.size, modified: s.mtime };
      }
    }
  }

  /**
   * Removes the object; like a put, durably before it resolves: the
   * directory that held the name is fsync'd. A delete that only reached the
   * page cache comes undone when power is lost — an expired manifest or an
   * index object gc replaced comes back, naming packs whose deletion did
   * become durable (a later put syncs the same directory), and a removed key
   * wrapping opens the repository again. An absent object's directory is
   * synced too: an earlier attempt may have unlinked it and died before the
   * sync.
   */
  async delete(key: string): Promise<void> {
    const path = this.path(key);
    try {
      await unlink(path).catch((e: NodeJS.ErrnoException) => {
        if (e.code !== 'ENOENT') throw e;
      });
      await fsyncDir(dirname(path)).catch((e: NodeJS.ErrnoException) => {
        // No directory, no name in it to make durable.
        if (e.code !== 'ENOENT' && e.code !== 'ENOTDIR') throw e;
      });
    } catch (e) {
      throw this.writeFailed(key, path, e);
    }
  }
}

async function removeStale(tmpDir: string): Promise<void> {
  const now = Date.now();
  for (const name of await readdir(tmpDir).catch(() => [] as string[])) {
    const p = join(tmpDir, name);
    const s = await stat(p).catch(() => undefined);
    if (s && now - s.mtimeMs > STALE_TMP_MS) await rm(p, { force: true }).catch(() => undefined);
  }
}

/** `file:///x`, `file:x` or a plain path, as a directory path. */
export function fileStorePath(location: string): string {
  if (location.startsWith('file://')) {
    const url = new URL(location);
    // file://backups would otherwise mean / on host "backups": a typo that points a repository at the root.
    if (url.host !== '' && url.host !== 'localhost') throw new InvalidArgumentError('repository', `${location} names host ${JSON.stringify(url.host)}: a file:// URL takes an empty host (file:///path) or localhost`);
    return decodeURIComponent(url.pathname);
  }
  if (location.startsWith('file:')) return location.slice('file:'.length);
  return location.split('/').join(sep);
}

/** Fills `buf` from the file at `offset`; a file shorter than that is an unavailable store, not short data. */
async function readFully(key: string, fh: FileHandle, buf: Buffer, offset: number): Promise<Buffer> {
  let done = 0;
  while (done < buf.length) {
    const { bytesRead } = await fh.read(buf, done, buf.length - done, offset + done);
    if (bytesRead === 0) break;
    done += bytesRead;
  }
  if (done !== buf.length) throw new StoreUnavailableError(key, `short read: ${done} of ${buf.length} bytes`);
  return buf;
}
