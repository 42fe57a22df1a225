/**
 * A fixed pool of chunk workers. Each worker chunks one file at a time; the
 * pool queues the rest. Claims and sealed chunks from every worker go to one
 * `ChunkSink` on the main thread, so dedup and packing stay single-owner.
 */
import type { ReadPacer } from './read-pacer.js';
import { Worker } from 'node:worker_threads';
import type { Repository } from '../repository/repository.js';
import type { Chunking } from '../chunking/chunker.js';
import { noBases, type ChunkSink, type FileChunks, type FileRange } from './chunk-pipeline.js';
import type { ReadCheckSpec } from './read-check.js';
import type { SealedBlob } from './pack-writer.js';
import { basesTransfer, type ToMain, type ToWorker } from './worker-protocol.js';

interface Job {
  id: number;
  path: string;
  chunking: Chunking;
  range: FileRange | undefined;
  readCheck: ReadCheckSpec | undefined;
  place: string | undefined;
  resolve: (r: FileChunks) => void;
  reject: (e: Error) => void;
}

export class ChunkWorkerPool {
  private readonly workers: Worker[] = [];
  private readonly idle: Worker[] = [];
  private readonly queue: Job[] = [];
  private readonly running = new Map<number, { job: Job; worker: Worker }>();
  private nextJob = 1;
  private readonly sink: ChunkSink;
  private fatal: Error | undefined;
  private closing = false;

  constructor(repo: Repository, size: number, sink: ChunkSink, pacer?: ReadPacer) {
    this.sink = sink;
    const init: ToWorker = {
      t: 'init',
      idKey: repo.keyRing.material.idKey,
      dataKeys: [...repo.keyRing.material.dataKeys],
      currentKeyId: repo.keyRing.material.currentKeyId,
      compressionLevel: repo.config.compression.level,
      ...(pacer ? { pacer: { bytesPerSecond: pacer.bytesPerSecond, state: pacer.shared } } : {}),
    };
    for (let i = 0; i < size; i++) {
      const w = new Worker(new URL('./chunk-worker.js', import.meta.url));
      w.on('message', (m: ToMain) => this.onMessage(w, m));
      w.on('error', (e) => this.onFatal(e));
      w.on('exit', (code) => {
        if (code !== 0) this.onFatal(new Error(`chunk worker exited with status ${code}`));
      });
      w.postMessage(init);
      this.workers.push(w);
      this.idle.push(w);
    }
  }

  /** Chunks a file (or part) on the next free worker; `place` as for `chunkFile`. */
  run(path: string, chunking: Chunking, readCheck?: ReadCheckSpec, range?: FileRange, place?: string): Promise<FileChunks> {
    if (this.fatal) return Promise.reject(this.fatal);
    return new Promise((resolve, reject) => {
      this.queue.push({ id: this.nextJob++, path, chunking, range, readCheck, place, resolve, reject });
      this.dispatch();
    });
  }

  private dispatch(): void {
    while (this.idle.length > 0 && this.queue.length > 0) {
      const worker = this.idle.pop()!;
      const job = this.queue.shift()!;
      this.running.set(job.id, { job, worker });
      worker.postMessage({ t: 'file', job: job.id, path: job.path, chunking: job.chunking, ...(job.range ? { range: job.range } : {}), ...(job.readCheck ? { readCheck: job.readCheck } : {}), ...(job.place !== undefined ? { place: job.place } : {}) } satisfies ToWorker);
    }
  }

  private onMessage(worker: Worker, m: ToMain): void {
    if (m.t === 'claim') {
      const ids: Buffer[] = [];
      const flat = Buffer.from(m.ids.buffer, m.ids.byteOffset, m.ids.byteLength);
      for (let o = 0; o < flat.length; o += 32) ids.push(flat.subarray(o, o + 32));
      this.sink.claim(ids, m.bytes, m.pages).then(
        (value) => worker.postMessage({ t: 'reply', req: m.req, value } satisfies ToWorker),
        (e: unknown) => this.onFatal(asError(e)),
      );
    } else if (m.t === 'bases') {
      const ask = this.sink.bases ? this.sink.bases(m.place, m.blocks) : Promise.resolve(noBases(m.blocks.length));
      ask.then(
        (chains) => worker.postMessage({ t: 'reply', req: m.req, value: chains } satisfies ToWorker, basesTransfer(chains)),
        (e: unknown) => this.onFatal(asError(e)),
      );
    } else if (m.t === 'store') {
      const data = asBuf(m.data);
      const ids = asBuf(m.ids);
      const bases = asBuf(m.bases);
      const baseOf = new Map(m.deltaAt.map((c, k) => [c, bases.subarray(k * 32, k * 32 + 32)]));
      let o = 0;
      let c = 0;
      const blobs: SealedBlob[] = m.lengths.map((length, i) => {
        const blob = data.subarray(o, (o += length));
        const chunks = Array.from({ length: m.counts[i]! }, () => {
          const base = baseOf.get(c);
          return { id: ids.subarray(c * 32, c * 32 + 32), rawLength: m.rawLengths[c++]!, ...(base ? { base } : {}) };
        });
        return { blob, chunks };
      });
      this.sink.store(blobs, m.pages).then(
        // The sink copied the blobs: hand the batch buffer back for the worker's next batch.
        () => worker.postMessage({ t: 'reply', req: m.req, value: m.data.buffer } satisfies ToWorker, [m.data.buffer as ArrayBuffer]),
        (e: unknown) => this.onFatal(asError(e)),
      );
    } else {
      const entry = this.running.get(m.job);
      if (!entry) return;
      this.running.delete(m.job);
      this.idle.push(worker);
      // Structured cloning hands a Buffer over as a plain Uint8Array.
      if (m.t === 'done') entry.job.resolve({ size: m.result.size, ids: Buffer.from(m.result.ids.buffer, m.result.ids.byteOffset, m.result.ids.byteLength), ...(m.result.damaged ? { damaged: m.result.damaged } : {}) });
      else entry.job.reject(Object.assign(new Error(m.message), { code: m.code }));
      this.dispatch();
    }
  }

  /** A sink failure (store down, say) or a dead worker ends the whole backup: every job fails. */
  private onFatal(e: Error): void {
    if (this.fatal || this.closing) return;
    this.fatal = e;
    for (const { job } of this.running.values()) job.reject(e);
    for (const job of this.queue) job.reject(e);
    this.running.clear();
    this.queue.length = 0;
  }

  async close(): Promise<void> {
    this.closing = true;
    await Promise.all(this.workers.map((w) => w.terminate()));
  }
}

function asError(e: unknown): Error {
  return e instanceof Error ? e : new Error(String(e));
}

function asBuf(u: Uint8Array): Buffer {
  return Buffer.from(u.buffer, u.byteOffset, u.byteLength);
}
