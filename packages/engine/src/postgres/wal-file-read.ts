/** Reading a WAL file from pg_wal (whole, or sealed as it is read) together with what identifies it as the file read (for notes that confirm it later without reading it again). */
import type { BigIntStats } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { SourceError } from '../errors.js';
import type { ChunkCodec } from '../format/chunk-codec.js';
import { WAL_HEAD_BYTES, WalSealer, type SealedWal } from './wal-seal.js';

/** A file as it was read: equal again later, its bytes are the ones read (no write leaves a file's change time as it was). */
export interface WalFileIdentity {
  dev: string;
  ino: string;
  size: number;
  mtimeNs: string;
  ctimeNs: string;
}

/**
 * The file's bytes, and its identity when it did not change while read
 * (device, inode, size and both times the same before and after). With
 * `into` large enough, the bytes are read into it (a view of it returned).
 */
export async function readWalFile(path: string, into?: Buffer): Promise<{ data: Buffer; identity?: WalFileIdentity }> {
  const { value: data, identity } = await readStable(path, (fh, size) => (into && size <= into.length ? readAll(fh, into.subarray(0, size)) : fh.readFile()), (data) => data.length);
  return identity ? { data, identity } : { data };
}

/**
 * Reads and seals the file as it goes, `buffer`'s size at a time (one
 * buffer, read into again: no memory the size of the file). Returns what was
 * sealed, the file's first page (whose header names the cluster) and its
 * identity when it did not change while read.
 */
export async function sealWalFile(
  codec: ChunkCodec,
  path: string,
  buffer: Buffer,
  /** Awaited between the halves of each step (default: the event loop's turn): the caller may hold the sealing back. */
  between: () => Promise<void> = () => new Promise<void>((resolve) => setImmediate(resolve)),
): Promise<{ sealed: SealedWal; head: Buffer; identity?: WalFileIdentity }> {
  const sealer = new WalSealer(codec);
  let head: Buffer | undefined;
  const { value: sealed, identity } = await readStable(
    path,
    async (fh) => {
      for (let at = 0; ; ) {
        const bytes = await readAll(fh, buffer, at);
        if (bytes.length === 0) break;
        head ??= Buffer.from(bytes.subarray(0, WAL_HEAD_BYTES));
        // Other work of this thread (the archiver's pushes and notes) runs between the two halves.
        sealer.cut(bytes);
        await between();
        sealer.seal();
        at += bytes.length;
      }
      return sealer.finish();
    },
    (sealed) => sealed.size,
  );
  return { sealed, head: head ?? Buffer.alloc(0), ...(identity ? { identity } : {}) };
}

/** `read` of the open file, and the file's identity when it did not change meanwhile and `length` of what was read is its size. */
async function readStable<T>(path: string, read: (fh: FileHandle, size: number) => Promise<T>, length: (value: T) => number): Promise<{ value: T; identity?: WalFileIdentity }> {
  try {
    const fh = await open(path, 'r');
    try {
      const before = await fh.stat({ bigint: true });
      const value = await read(fh, Number(before.size));
      const after = await fh.stat({ bigint: true });
      return sameFile(before, after) && after.size === BigInt(length(value)) ? { value, identity: identityOf(after) } : { value };
    } finally {
      await fh.close();
    }
  } catch (e) {
    throw new SourceError(path, (e as NodeJS.ErrnoException).code ?? (e as Error).message, { cause: e });
  }
}

function identityOf(s: BigIntStats): WalFileIdentity {
  return { dev: s.dev.toString(), ino: s.ino.toString(), size: Number(s.size), mtimeNs: s.mtimeNs.toString(), ctimeNs: s.ctimeNs.toString() };
}

function sameFile(a: BigIntStats, b: BigIntStats): boolean {
  return a.dev === b.dev && a.ino === b.ino && a.size === b.size && a.mtimeNs === b.mtimeNs && a.ctimeNs === b.ctimeNs;
}

/** Fills `buf` from the file's offset `from` (default its start); a shorter rest gives a shorter view. */
async function readAll(fh: FileHandle, buf: Buffer, from = 0): Promise<Buffer> {
  let at = 0;
  while (at < buf.length) {
    const { bytesRead } = await fh.read(buf, at, buf.length - at, from + at);
    if (bytesRead === 0) break;
    at += bytesRead;
  }
  return buf.subarray(0, at);
}
