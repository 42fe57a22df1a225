/**
 * Worker-thread side of the backup pipeline: runs `chunkFile` for files the
 * main thread hands it, asking the main thread (which owns dedup state and the
 * pack writer) which chunks are new and sending it the sealed ones.
 */
import { parentPort } from 'node:worker_threads';
import { ChunkCodec } from '../format/chunk-codec.js';
import type { Chunking } from '../chunking/chunker.js';
import { ReadPacer } from './read-pacer.js';
import { chunkFile, type BaseChains, type ChunkSink, type FileRange } from './chunk-pipeline.js';
import type { ReadCheckSpec } from './read-check.js';
import type { ToMain, ToWorker } from './worker-protocol.js';
import type { SealedBlob } from './pack-writer.js';

const port = parentPort;
if (!port) throw new Error('chunk-worker must run in a worker thread');

let codec: ChunkCodec | undefined;
let pacer: ReadPacer | undefined;
let nextReq = 1;
const waiting = new Map<number, (value: unknown) => void>();

function call(msg: Extract<ToMain, { t: 'claim' | 'store' | 'bases' }>, transfer: ArrayBuffer[] = []): Promise<unknown> {
  return new Promise((resolve) => {
    waiting.set(msg.req, resolve);
    port!.postMessage(msg, transfer);
  });
}

port.on('message', (msg: ToWorker) => {
  if (msg.t === 'init') {
    codec = new ChunkCodec({ idKey: msg.idKey, dataKeys: new Map(msg.dataKeys), currentKeyId: msg.currentKeyId }, msg.compressionLevel);
    if (msg.pacer) pacer = new ReadPacer(msg.pacer.bytesPerSecond, msg.pacer.state);
  } else if (msg.t === 'reply') {
    const resolve = waiting.get(msg.req);
    waiting.delete(msg.req);
    resolve?.(msg.value);
  } else if (msg.t === 'file') {
    void runJob(msg.job, msg.path, msg.chunking, msg.range, msg.readCheck, msg.place);
  }
});

/** The one batch buffer this worker owns (when it is not on loan to the main thread). */
let batchBuffer: ArrayBuffer | undefined;

function takeBatchBuffer(size: number): Buffer {
  const own = batchBuffer;
  batchBuffer = undefined;
  if (own && own.byteLength >= size) return Buffer.from(own, 0, size);
  return Buffer.from(new ArrayBuffer(Math.max(size, 2 << 20)), 0, size);
}

async function runJob(job: number, path: string, chunking: Chunking, range: FileRange | undefined, readCheck: ReadCheckSpec | undefined, place: string | undefined): Promise<void> {
  const sink: ChunkSink = {
    async claim(ids: Buffer[], bytes: number, pages: boolean) {
      const flat = Buffer.concat(ids);
      return (await call({ t: 'claim', job, req: nextReq++, ids: flat, bytes, pages })) as boolean[];
    },
    async store(blobs: SealedBlob[], pages: boolean) {
      // The batch moves to the main thread without a copy, and comes back with the reply for reuse. One batch
      // is in flight: this thread goes on with the next while the main thread packs this one.
      await storing;
      const total = blobs.reduce((n, b) => n + b.blob.length, 0);
      const chunks = blobs.flatMap((b) => b.chunks);
      const data = takeBatchBuffer(total);
      const ids = Buffer.allocUnsafeSlow(chunks.length * 32);
      const deltaAt: number[] = [];
      chunks.forEach((c, i) => c.base && deltaAt.push(i));
      const bases = Buffer.allocUnsafeSlow(deltaAt.length * 32);
      deltaAt.forEach((i, k) => bases.set(chunks[i]!.base!, k * 32));
      let o = 0;
      for (const b of blobs) {
        data.set(b.blob, o);
        o += b.blob.length;
      }
      chunks.forEach((c, i) => ids.set(c.id, i * 32));
      const msg = {
        t: 'store' as const,
        job,
        req: nextReq++,
        ids,
        lengths: blobs.map((b) => b.blob.length),
        counts: blobs.map((b) => b.chunks.length),
        rawLengths: chunks.map((c) => c.rawLength),
        data,
        pages,
        deltaAt,
        bases,
      };
      storing = call(msg, [data.buffer as ArrayBuffer, ids.buffer as ArrayBuffer, bases.buffer as ArrayBuffer]).then((returned) => {
        if (returned instanceof ArrayBuffer) batchBuffer = returned;
      });
    },
    async bases(at: string, blocks: number[]) {
      return (await call({ t: 'bases', job, req: nextReq++, place: at, blocks })) as BaseChains;
    },
  };
  let storing: Promise<void> = Promise.resolve();
  try {
    const result = await chunkFile(path, chunking, codec!, sink, readCheck, range, pacer, place);
    // The file is done once the main thread holds all of its blobs.
    await storing;
    port!.postMessage({ t: 'done', job, result } satisfies ToMain);
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    port!.postMessage({ t: 'failed', job, message: err.message, code: err.code } satisfies ToMain);
  }
}
