/** Messages between the backup's main thread and its chunk workers. */
import type { Chunking } from '../chunking/chunker.js';
import type { FileChunks, FileRange } from './chunk-pipeline.js';
import type { ReadCheckSpec } from './read-check.js';

export interface WorkerInit {
  t: 'init';
  idKey: Uint8Array;
  dataKeys: [number, Uint8Array][];
  currentKeyId: number;
  compressionLevel: number;
  /** The backup's read ceiling, shared with every thread (`ReadPacer`). */
  pacer?: { bytesPerSecond: number; state: SharedArrayBuffer };
}

export type ToWorker = WorkerInit | { t: 'file'; job: number; path: string; chunking: Chunking; range?: FileRange; readCheck?: ReadCheckSpec } | { t: 'reply'; req: number; value: unknown };

export type ToMain =
  | { t: 'claim'; job: number; req: number; ids: Uint8Array; bytes: number; pages: boolean }
  /** Sealed blobs back to back in `data` (transferred, not copied) with their lengths; per blob, how many chunks it holds; per chunk, id and raw length. */
  | { t: 'store'; job: number; req: number; ids: Uint8Array; lengths: number[]; counts: number[]; rawLengths: number[]; data: Uint8Array; pages: boolean }
  | { t: 'done'; job: number; result: FileChunks }
  | { t: 'failed'; job: number; message: string; code: string | undefined };
