/** Messages between a restore's main thread and its workers. */
import type { RangeChunks } from './range-writer.js';

export interface RestoreInit {
  t: 'init';
  idKey: Uint8Array;
  dataKeys: [number, Uint8Array][];
  currentKeyId: number;
}

/** One fetched range: its bytes (transferred) and, per chunk, where its blob lies and where it goes. */
export interface RestoreJob extends RangeChunks {
  t: 'range';
  job: number;
  data: Uint8Array;
  /** Set when `data` is a whole pack, checked against it first. */
  sha?: string;
  /** Target path of every file the range writes to. */
  paths: Record<number, string>;
  /** Files the worker creates, if they are not there yet, at their size (as given): an empty target's. */
  create: Record<number, number>;
  /** Files were created empty at their size: chunks of zeros are left as holes. */
  holes: boolean;
}

export type RestoreWorkerMessage = RestoreInit | RestoreJob;

export interface RestoreReply {
  t: 'done';
  job: number;
  /** Chunk uses completed, per file. */
  done: [number, number][];
  bytesWritten: number;
  /** File bytes the range accounted for (progress). */
  bytes: number;
  /** Why a chunk (or the pack) failed verification. */
  corrupt?: string;
  /** A write failed. */
  failed?: { message: string; code: string | undefined; path?: string };
}
