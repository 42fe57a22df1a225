/** Runs the engine's chunk pipeline over in-memory data handed over by the benchmark. */
import { parentPort, workerData } from 'node:worker_threads';
import { ChunkCodec, StreamingChunker, type ChunkerParams, type Keys } from '@coffer/engine';

interface Job {
  data: Uint8Array;
  keys: { idKey: Uint8Array; dataKey: Uint8Array };
  chunker: ChunkerParams;
  level: number;
  readSize: number;
}

const job = workerData as Job;
const keys: Keys = { idKey: job.keys.idKey, dataKeys: new Map([[1, job.keys.dataKey]]), currentKeyId: 1 };
const codec = new ChunkCodec(keys, job.level);
const chunker = new StreamingChunker(job.chunker);
const data = Buffer.from(job.data.buffer, job.data.byteOffset, job.data.byteLength);
let stored = 0;
parentPort!.postMessage('ready');
await new Promise((resolve) => parentPort!.once('message', resolve));
const t0 = performance.now();
const take = (chunks: Buffer[]) => {
  for (const c of chunks) stored += codec.encode(codec.id(c), c).length;
};
for (let o = 0; o < data.length; o += job.readSize) take(chunker.push(data.subarray(o, o + job.readSize)));
take(chunker.finish());
parentPort!.postMessage({ ms: performance.now() - t0, stored });
