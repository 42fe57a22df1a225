/** Worker-thread side of the archiver's pool: reads a WAL file, hashing, cutting and sealing it as it goes (`sealWalFile`), and hands bytes and blobs back without copies. */
import { parentPort } from 'node:worker_threads';
import { ChunkCodec } from '../format/chunk-codec.js';
import { sealWalFile } from './wal-file-read.js';
import { WAL_GROUP } from './wal-seal.js';
import type { WalSealToMain, WalSealToWorker } from './wal-seal-pool.js';

const port = parentPort;
if (!port) throw new Error('wal-seal-worker must run in a worker thread');
let codec: ChunkCodec | undefined;
let buffer: Buffer | undefined;

port.on('message', (msg: WalSealToWorker) => {
  if (msg.t === 'init') {
    codec = new ChunkCodec({ idKey: msg.idKey, dataKeys: new Map(msg.dataKeys), currentKeyId: msg.currentKeyId }, msg.compressionLevel);
    port.postMessage({ t: 'ready' } satisfies WalSealToMain);
    return;
  }
  void (async () => {
    try {
      // One read buffer, used again for every file: the sealer copies out what it keeps.
      const { sealed: s, head: first, identity } = await sealWalFile(codec!, msg.path, (buffer ??= Buffer.allocUnsafeSlow(WAL_GROUP)));
      // The main thread needs the first page (the header names the cluster), not the file.
      const head = owned(first);
      const blobs = owned(Buffer.concat(s.sealed.map((b) => b.blob)));
      const reply: WalSealToMain = {
        t: 'done',
        job: msg.job,
        head,
        size: s.size,
        sha256: s.sha256,
        ids: Buffer.concat(s.ids),
        sealedIds: Buffer.concat(s.sealed.flatMap((b) => b.chunks.map((c) => c.id))),
        lengths: s.sealed.map((b) => b.blob.length),
        counts: s.sealed.map((b) => b.chunks.length),
        rawLengths: s.sealed.flatMap((b) => b.chunks.map((c) => c.rawLength)),
        blobs,
        ...(identity ? { identity } : {}),
      };
      port.postMessage(reply, [head.buffer as ArrayBuffer, blobs.buffer as ArrayBuffer]);
    } catch (e) {
      port.postMessage({ t: 'failed', job: msg.job, message: (e as Error).message, path: msg.path, code: (e as { code?: string }).code } satisfies WalSealToMain);
    }
  })();
});

/** `b` itself when it is the whole of its memory (which then moves to the main thread), else a copy that is: a small Buffer lives in Node's shared pool, which must not move. */
function owned(b: Buffer): Buffer {
  if (b.byteOffset === 0 && b.buffer.byteLength === b.length) return b;
  const copy = Buffer.allocUnsafeSlow(b.length);
  b.copy(copy);
  return copy;
}
