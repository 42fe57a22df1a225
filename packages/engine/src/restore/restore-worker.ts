/**
 * Restore worker: verifies and writes the chunks of fetched pack ranges that
 * the main thread hands it, each file opened for the range and closed after,
 * and reports which chunk uses it completed (the main thread fsyncs a file
 * once all of its chunks are written).
 */
import { closeSync, constants as fsc, fdatasync, ftruncateSync, openSync, readSync, writeSync } from 'node:fs';
import { parentPort } from 'node:worker_threads';
import { sha256Hex } from '../bytes.js';
import { ChunkCodec } from '../format/chunk-codec.js';
import { fsPath } from '../names.js';
import { writeRange } from './range-writer.js';
import type { RestoreJob, RestoreReply, RestoreWorkerMessage } from './restore-protocol.js';

const port = parentPort;
if (!port) throw new Error('restore-worker must run in a worker thread');
let codec: ChunkCodec | undefined;
/** Bytes written to a file between the flushes started along the way (the durable fsync still comes from the main thread). */
const EARLY_SYNC = 32 * 1024 * 1024;

port.on('message', (msg: RestoreWorkerMessage) => {
  if (msg.t === 'init') codec = new ChunkCodec({ idKey: msg.idKey, dataKeys: new Map(msg.dataKeys), currentKeyId: msg.currentKeyId }, 3);
  else void run(msg).then((reply) => port.postMessage(reply));
});

async function run(job: RestoreJob): Promise<RestoreReply> {
  const data = Buffer.from(job.data.buffer, job.data.byteOffset, job.data.byteLength);
  if (job.sha && sha256Hex(data) !== job.sha) return { t: 'done', job: job.job, corrupt: 'SHA-256 of its bytes does not match its name', done: [], bytesWritten: 0, bytes: 0 };
  // Plain blocking calls: this thread has nothing else to do meanwhile, and a restore of pages makes many
  // small writes, each far cheaper as a direct pwrite than as a round trip through the thread pool.
  const handles = new Map<number, number>();
  const unsynced = new Map<number, number>();
  const syncing: Promise<unknown>[] = [];
  const done = new Map<number, number>();
  let bytesWritten = 0;
  let bytes = 0;
  let syncError: NodeJS.ErrnoException | undefined;
  /** The file being written, to name it when a write fails (fd-based calls carry no path). */
  let writing: string | undefined;
  const handleOf = (file: number): number => {
    let fd = handles.get(file);
    if (fd !== undefined) return fd;
    const size = job.create[file];
    fd = openSync(fsPath(job.paths[file]!), fsc.O_RDWR | fsc.O_NOFOLLOW | (size !== undefined ? fsc.O_CREAT : 0), 0o600);
    handles.set(file, fd);
    // Whichever writer comes first creates the file; setting the same size again loses nothing written.
    if (size !== undefined) ftruncateSync(fd, size);
    return fd;
  };
  try {
    const corrupt = await writeRange(
      codec!,
      data,
      job,
      {
        async read(file, into, offset) {
          writing = job.paths[file];
          const fd = handleOf(file);
          let n = 0;
          while (n < into.length) {
            const got = readSync(fd, into, n, into.length - n, offset + n);
            if (got === 0) break;
            n += got;
          }
          return n;
        },
        async write(file, bytesOut, offset, uses) {
          writing = job.paths[file];
          const fd = handleOf(file);
          let n = 0;
          while (n < bytesOut.byteLength) n += writeSync(fd, bytesOut, n, bytesOut.byteLength - n, offset + n);
          bytesWritten += n;
          done.set(file, (done.get(file) ?? 0) + uses);
          // Start the disk writing early, alongside the decoding, instead of all of it at the final fsync.
          const pending = (unsynced.get(file) ?? 0) + n;
          unsynced.set(file, pending >= EARLY_SYNC ? 0 : pending);
          // An error from a flush is final for the file (the kernel may have dropped the pages): it fails the job.
          if (pending >= EARLY_SYNC) syncing.push(new Promise((r) => fdatasync(fd, (err) => r((syncError ??= err ?? undefined)))));
        },
      },
      (b) => (bytes += b),
      job.holes,
    );
    await Promise.all(syncing);
    if (syncError) throw syncError;
    return { t: 'done', job: job.job, ...(corrupt ? { corrupt } : {}), done: [...done], bytesWritten, bytes };
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    return { t: 'done', job: job.job, failed: { message: err.message, code: err.code, ...(writing !== undefined ? { path: err.path ?? writing } : {}) }, done: [...done], bytesWritten, bytes };
  } finally {
    await Promise.all(syncing);
    for (const fd of handles.values()) {
      try {
        closeSync(fd);
      } catch {
        // already failed above; nothing more to say about this file
      }
    }
  }
}
