/**
 * Worker threads for the archiver: each reads one WAL file at a time and
 * does the CPU-heavy part of archiving it (SHA-256, pieces, ids, zstd,
 * AES-GCM: `sealWal`), so that files are sealed on every core while the
 * main thread writes packs and records.
 */
import { Worker } from 'node:worker_threads';
import type { Repository } from '../repository/repository.js';
import type { SealedBlob } from '../content/sealed-groups.js';
import type { WalFileIdentity } from './wal-file-read.js';
import type { SealedWal } from './wal-seal.js';

export type WalSealToWorker =
  | { t: 'init'; idKey: Uint8Array; dataKeys: [number, Uint8Array][]; currentKeyId: number; compressionLevel: number }
  | { t: 'file'; job: number; path: string };

export type WalSealToMain =
  | {
      t: 'done';
      job: number;
      /** The file's first page (transferred): its header names the cluster. */
      head: Uint8Array;
      size: number;
      sha256: string;
      /** Every piece's id, 32 bytes each, in order. */
      ids: Uint8Array;
      /** The sealed chunks' ids, blob by blob. */
      sealedIds: Uint8Array;
      /** Blobs back to back in `blobs` (transferred): each one's length, and how many chunks it holds, and each chunk's raw length. */
      lengths: number[];
      counts: number[];
      rawLengths: number[];
      blobs: Uint8Array;
      identity?: WalFileIdentity;
    }
  | { t: 'failed'; job: number; path: string; message: string; code: string | undefined }
  /** The worker has loaded and holds its keys: sealing on it no longer waits for its start. */
  | { t: 'ready' };

export interface SealedWalFile {
  /** The file's first page. */
  data: Buffer;
  sealed: SealedWal;
  identity?: WalFileIdentity;
}

export class WalSealPool {
  private readonly workers: Worker[] = [];
  private readonly idle: Worker[] = [];
  private readonly queue: { job: number; path: string }[] = [];
  private readonly waiting = new Map<number, { resolve: (r: SealedWalFile) => void; reject: (e: Error) => void; worker?: Worker }>();
  private nextJob = 1;
  private fatal: Error | undefined;
  private readyWorkers = 0;

  /** `onFree`: called when a worker has started, or has finished a file (see `free`). */
  constructor(
    repo: Repository,
    size: number,
    private readonly onFree: () => void = () => undefined,
  ) {
    const init: WalSealToWorker = {
      t: 'init',
      idKey: repo.keyRing.material.idKey,
      dataKeys: [...repo.keyRing.material.dataKeys],
      currentKeyId: repo.keyRing.material.currentKeyId,
      compressionLevel: repo.config.compression.level,
    };
    for (let i = 0; i < size; i++) {
      const w = new Worker(new URL('./wal-seal-worker.js', import.meta.url));
      w.on('message', (m: WalSealToMain) => this.onMessage(w, m));
      w.on('error', (e) => this.onFatal(e));
      w.on('exit', (code) => {
        if (code !== 0) this.onFatal(new Error(`WAL seal worker exited with status ${code}`));
      });
      w.postMessage(init);
      this.workers.push(w);
      this.idle.push(w);
    }
  }

  /** Reads and seals the WAL file at `path` on a worker. */
  seal(path: string): Promise<SealedWalFile> {
    if (this.fatal) return Promise.reject(this.fatal);
    return new Promise((resolve, reject) => {
      const job = this.nextJob++;
      this.waiting.set(job, { resolve, reject });
      this.queue.push({ job, path });
      this.dispatch();
    });
  }

  /**
   * Whether a worker has started. Until one has, a file is better sealed on
   * the caller's thread: a worker takes longer to start (a thread, the
   * bundle, zstd) than a segment takes to seal, and the first call waits.
   */
  get warm(): boolean {
    return this.readyWorkers > 0 && !this.fatal;
  }

  /**
   * Whether a file given now would start at once on a started worker:
   * files queued here wait for this pool's workers alone, while the caller's
   * thread might be free sooner.
   */
  get free(): boolean {
    return this.warm && this.idle.length > 0 && this.queue.length === 0;
  }

  async close(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.terminate()));
  }

  private dispatch(): void {
    while (this.idle.length > 0 && this.queue.length > 0) {
      const worker = this.idle.pop()!;
      const { job, path } = this.queue.shift()!;
      this.waiting.get(job)!.worker = worker;
      worker.postMessage({ t: 'file', job, path } satisfies WalSealToWorker);
    }
  }

  private onMessage(worker: Worker, m: WalSealToMain): void {
    if (m.t === 'ready') {
      this.readyWorkers++;
      this.onFree();
      return;
    }
    const entry = this.waiting.get(m.job);
    this.waiting.delete(m.job);
    this.idle.push(worker);
    this.dispatch();
    if (this.free) this.onFree();
    if (!entry) return;
    if (m.t === 'failed') {
      entry.reject(Object.assign(new Error(`${m.path}: ${m.message}`), { code: m.code }));
      return;
    }
    const buf = (u: Uint8Array) => Buffer.from(u.buffer, u.byteOffset, u.byteLength);
    const ids = buf(m.ids);
    const sealedIds = buf(m.sealedIds);
    const blobs = buf(m.blobs);
    let o = 0;
    let c = 0;
    const sealed: SealedBlob[] = m.lengths.map((length, i) => {
      const blob = blobs.subarray(o, (o += length));
      const chunks = Array.from({ length: m.counts[i]! }, () => ({ id: sealedIds.subarray(c * 32, c * 32 + 32), rawLength: m.rawLengths[c++]! }));
      return { blob, chunks };
    });
    const pieceIds: Buffer[] = [];
    for (let i = 0; i < ids.length; i += 32) pieceIds.push(ids.subarray(i, i + 32));
    entry.resolve({ data: buf(m.head), sealed: { size: m.size, sha256: m.sha256, ids: pieceIds, sealed }, ...(m.identity ? { identity: m.identity } : {}) });
  }

  /** A dead worker fails what waits; later calls fail at once (the archiver then seals on its own thread). */
  private onFatal(e: Error): void {
    if (this.fatal) return;
    this.fatal = e;
    for (const { reject } of this.waiting.values()) reject(e);
    this.waiting.clear();
    this.queue.length = 0;
  }
}
