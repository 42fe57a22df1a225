/** Messages between the backup's main thread and its chunk workers. */
import type { ChunkerParams } from '../chunking/chunker.js';
import type { FileChunks } from './chunk-pipeline.js';
import type { SealedChunk } from './pack-writer.js';

export interface WorkerInit {
  t: 'init';
  idKey: Uint8Array;
  dataKeys: [number, Uint8Array][];
  currentKeyId: number;
  compressionLevel: number;
  chunker: ChunkerParams;
}

export type ToWorker = WorkerInit | { t: 'file'; job: number; path: string } | { t: 'reply'; req: number; value: unknown };

export type ToMain =
  | { t: 'claim'; job: number; req: number; ids: Uint8Array }
  | { t: 'store'; job: number; req: number; chunks: SealedChunk[] }
  | { t: 'done'; job: number; result: FileChunks }
  | { t: 'failed'; job: number; message: string; code: string | undefined };
