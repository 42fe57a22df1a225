/**
 * CPU pipeline figures, all on the same in-memory bytes and in one process:
 * raw FastCDC boundaries, raw SHA-256, the two together (our ceiling), and the
 * engine's pipeline (chunk → keyed id → zstd → AES-GCM) on one thread and
 * spread over worker threads.
 */
import { createHash, randomBytes } from 'node:crypto';
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { get_chunks } from 'fastcdc-wasm';
import { ChunkCodec, DEFAULT_CHUNKER, StreamingChunker, type Keys } from '@coffer/engine';
import { bestOf, mbps } from './measure.js';

export interface PipelineFigures {
  bytes: number;
  threads: number;
  rawCdc: number;
  rawSha: number;
  rawCdcSha: number;
  pipeline1: number;
  pipelineN: number;
  storedRatio: number;
}

const READ = 4 << 20;

/** Workers start and map the shared input first; the clock runs from "go" to the last worker done. */
async function threadedRun(data: Buffer, threads: number, keys: Keys): Promise<number> {
  const share = Math.ceil(data.length / threads);
  const workers = Array.from({ length: threads }, (_, i) => {
    const part = data.subarray(i * share, Math.min(data.length, (i + 1) * share));
    return new Worker(new URL('./pipeline-worker.js', import.meta.url), {
      workerData: { data: part, keys: { idKey: keys.idKey, dataKey: keys.dataKeys.get(1) }, chunker: DEFAULT_CHUNKER, level: 3, readSize: READ },
    });
  });
  await Promise.all(workers.map((w) => new Promise((resolve) => w.once('message', resolve))));
  const t = performance.now();
  await Promise.all(
    workers.map(
      (w) =>
        new Promise<void>((resolve, reject) => {
          w.once('message', () => resolve());
          w.once('error', reject);
          w.postMessage('go');
        }),
    ),
  );
  const ms = performance.now() - t;
  await Promise.all(workers.map((w) => w.terminate()));
  return ms;
}

/** Half random bytes, half repetitive text: compresses about 2×, like a mixed file tree. */
export function mixedData(bytes: number): Buffer {
  // Shared memory, so worker threads read the same bytes without a copy.
  const out = Buffer.from(new SharedArrayBuffer(bytes));
  const block = 1 << 20;
  for (let o = 0; o < bytes; o += block) {
    const n = Math.min(block, bytes - o);
    if ((o / block) % 2 === 0) randomBytes(n).copy(out, o);
    else out.write(`row ${o} customer=${(o * 2654435761) >>> 0} status=active amount=${o % 9973}.00\n`.repeat(Math.ceil(n / 60)).slice(0, n), o, 'latin1');
  }
  return out;
}

export async function pipelineFigures(bytes: number, runs: number): Promise<PipelineFigures> {
  const data = mixedData(bytes);
  const { minSize, avgSize, maxSize } = DEFAULT_CHUNKER;
  const rawCdc = bestOf(runs, () => {
    const t = performance.now();
    for (let o = 0; o < data.length; o += READ) get_chunks(data.subarray(o, o + READ), minSize, avgSize, maxSize);
    return performance.now() - t;
  });
  const rawSha = bestOf(runs, () => {
    const t = performance.now();
    for (let o = 0; o < data.length; o += READ) createHash('sha256').update(data.subarray(o, o + READ)).digest();
    return performance.now() - t;
  });
  const rawCdcSha = bestOf(runs, () => {
    const t = performance.now();
    for (let o = 0; o < data.length; o += READ) {
      const part = data.subarray(o, o + READ);
      const cuts = get_chunks(part, minSize, avgSize, maxSize);
      for (let i = 1; i < cuts.length; i++) createHash('sha256').update(part.subarray(cuts[i - 1], cuts[i])).digest();
    }
    return performance.now() - t;
  });
  const keys: Keys = { idKey: randomBytes(32), dataKeys: new Map([[1, randomBytes(32)]]), currentKeyId: 1 };
  const codec = new ChunkCodec(keys, 3);
  let stored = 0;
  const pipeline1 = bestOf(runs, () => {
    const t = performance.now();
    const chunker = new StreamingChunker(DEFAULT_CHUNKER);
    stored = 0;
    const take = (cs: Buffer[]) => {
      for (const c of cs) stored += codec.encode(codec.id(c), c).length;
    };
    for (let o = 0; o < data.length; o += READ) take(chunker.push(data.subarray(o, o + READ)));
    take(chunker.finish());
    return performance.now() - t;
  });
  const threads = availableParallelism();
  let pipelineN = Infinity;
  for (let r = 0; r < runs; r++) pipelineN = Math.min(pipelineN, await threadedRun(data, threads, keys));
  return {
    bytes,
    threads,
    rawCdc: mbps(bytes, rawCdc),
    rawSha: mbps(bytes, rawSha),
    rawCdcSha: mbps(bytes, rawCdcSha),
    pipeline1: mbps(bytes, pipeline1),
    pipelineN: mbps(bytes, pipelineN),
    storedRatio: stored / bytes,
  };
}
