/** Messages between the backup's main thread and its chunk workers. */
import type { Chunking } from '../chunking/chunker.js';
import type { BaseChains, FileChunks, FileRange } from './chunk-pipeline.js';
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

/** A file to chunk; `place` is its path in the parent backup, for page deltas. */
export type ToWorker = WorkerInit | { t: 'file'; job: number; path: string; chunking: Chunking; range?: FileRange; readCheck?: ReadCheckSpec; place?: string } | { t: 'reply'; req: number; value: unknown };

/** The buffers of a `bases` reply, transferred rather than copied. */
export function basesTransfer(chains: BaseChains): ArrayBuffer[] {
  return [chains.data.buffer as ArrayBuffer, chains.ids.buffer as ArrayBuffer];
}

export type ToMain =
  | { t: 'claim'; job: number; req: number; ids: Uint8Array; bytes: number; pages: boolean }
  /** For page deltas: the chains that give the previous versions of these blocks of the file `place` (a `BaseChains` reply). */
  | { t: 'bases'; job: number; req: number; place: string; blocks: number[] }
  /**
   * Sealed blobs back to back in `data` (transferred, not copied) with their lengths; per blob, how many chunks it
   * holds; per chunk, id and raw length; the chunks that are page deltas (by number) and their bases' ids, in order.
   */
  | { t: 'store'; job: number; req: number; ids: Uint8Array; lengths: number[]; counts: number[]; rawLengths: number[]; data: Uint8Array; pages: boolean; deltaAt: number[]; bases: Uint8Array }
  | { t: 'done'; job: number; result: FileChunks }
  | { t: 'failed'; job: number; message: string; code: string | undefined };
