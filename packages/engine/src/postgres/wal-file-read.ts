/** Reading a WAL file from pg_wal together with what identifies it as the file read (for notes that confirm it later without reading it again). */
import type { BigIntStats } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { SourceError } from '../errors.js';

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
  try {
    const fh = await open(path, 'r');
    try {
      const before = await fh.stat({ bigint: true });
      const data = into && before.size <= BigInt(into.length) ? await readAll(fh, into.subarray(0, Number(before.size))) : await fh.readFile();
      const after = await fh.stat({ bigint: true });
      return sameFile(before, after) && after.size === BigInt(data.length) ? { data, identity: identityOf(after) } : { data };
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

/** Fills `buf` from the file's start; a shorter file gives a shorter view. */
async function readAll(fh: FileHandle, buf: Buffer): Promise<Buffer> {
  let at = 0;
  while (at < buf.length) {
    const { bytesRead } = await fh.read(buf, at, buf.length - at, at);
    if (bytesRead === 0) break;
    at += bytesRead;
  }
  return buf.subarray(0, at);
}
