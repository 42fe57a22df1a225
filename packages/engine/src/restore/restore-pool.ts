/** A fixed pool of restore workers; ranges queue until a worker is free. */
import { Worker } from 'node:worker_threads';
import type { Repository } from '../repository/repository.js';
import type { RestoreJob, RestoreReply, RestoreWorkerMessage } from './restore-protocol.js';

interface Pending {
  job: RestoreJob;
  transfer: ArrayBuffer[];
  resolve: (r: RestoreReply) => void;
  reject: (e: Error) => void;
}

export class RestoreWorkerPool {
  private readonly workers: Worker[] = [];
  private readonly idle: Worker[] = [];
  private readonly queue: Pending[] = [];
  private readonly running = new Map<Worker, Pending>();
  private fatal: Error | undefined;
  private closing = false;

  constructor(repo: Repository, size: number) {
    const init: RestoreWorkerMessage = { t: 'init', idKey: repo.keyRing.material.idKey, dataKeys: [...repo.keyRing.material.dataKeys], currentKeyId: repo.keyRing.material.currentKeyId };
    for (let i = 0; i < size; i++) {
      const w = new Worker(new URL('./restore-worker.js', import.meta.url));
      w.on('message', (m: RestoreReply) => {
        const p = this.running.get(w);
        this.running.delete(w);
        this.idle.push(w);
        p?.resolve(m);
        this.dispatch();
      });
      w.on('error', (e) => this.fail(e));
      w.on('exit', (code) => {
        if (code !== 0) this.fail(new Error(`restore worker exited with status ${code}`));
      });
      w.postMessage(init);
      this.workers.push(w);
      this.idle.push(w);
    }
  }

  run(job: RestoreJob, transfer: ArrayBuffer[]): Promise<RestoreReply> {
    if (this.fatal) return Promise.reject(this.fatal);
    return new Promise((resolve, reject) => {
      this.queue.push({ job, transfer, resolve, reject });
      this.dispatch();
    });
  }

  private dispatch(): void {
    while (this.idle.length > 0 && this.queue.length > 0) {
      const w = this.idle.pop()!;
      const p = this.queue.shift()!;
      this.running.set(w, p);
      w.postMessage(p.job, p.transfer);
    }
  }

  private fail(e: Error): void {
    if (this.fatal || this.closing) return;
    this.fatal = e;
    for (const p of [...this.running.values(), ...this.queue]) p.reject(e);
    this.running.clear();
    this.queue.length = 0;
  }

  async close(): Promise<void> {
    this.closing = true;
    await Promise.all(this.workers.map((w) => w.terminate()));
  }
}
