/**
 * The CPU side of archiving WAL bytes, apart from the I/O: the file's
 * SHA-256, its fixed-size pieces and their keyed ids, and the pieces
 * compressed and sealed in groups. `pushOne` runs it inline; the archiver
 * runs it on worker threads (`wal-seal-pool.ts`) and on its own thread, as
 * it reads each file (`sealWalFile`).
 */
import { createHash, type Hash } from 'node:crypto';
import type { ChunkCodec } from '../format/chunk-codec.js';
import { sealInGroups, type SealedBlob } from '../content/sealed-groups.js';

/** Bytes of WAL chunks compressed and sealed as one group blob. */
export const WAL_GROUP = 1024 * 1024;
/** A WAL page: the long header at a file's start names the cluster and the segment size; a sealed file's push needs only it. */
export const WAL_HEAD_BYTES = 8192;
/** Bytes of a WAL chunk (the last piece of a file or of a flush may be shorter). */
export const WAL_CHUNK = 256 * 1024;

export interface SealedWal {
  /** Bytes in the file. */
  size: number;
  sha256: string;
  /** The id of every piece past the prefix, in order (repeats included). */
  ids: Buffer[];
  /** The first piece of each id, sealed; blobs are the caller's own (copied out of the codec's slab). */
  sealed: SealedBlob[];
}

/**
 * `data`'s SHA-256 (unless the caller has it), and its bytes past `priorLength` cut and sealed. WAL is
 * cut in fixed pieces, not by content: it does not repeat across files (what
 * content-defined boundaries would find again), and finding them would cost
 * a pass over every byte. A streamed segment's bytes are cut where each
 * flush ended, so no flush stores a growing prefix again.
 */
export function sealWal(codec: ChunkCodec, data: Buffer, priorLength = 0, sha256?: string): SealedWal {
  const sealer = new WalSealer(codec, priorLength, sha256);
  sealer.add(data.subarray(0, Math.min(priorLength, data.length)));
  sealer.add(data.subarray(Math.min(priorLength, data.length)));
  return sealer.finish();
}

/**
 * Seals a WAL file as its bytes come (`add`), so that a reader needs no
 * buffer the size of the file: 16 MiB of fresh memory costs more in page
 * faults than sealing it does. What is added is cut, compressed and sealed at
 * once and copied out of the codec's slab: `add`'s bytes may be overwritten
 * once it returns, and the codec is free for others between calls.
 */
export class WalSealer {
  private readonly hash: Hash | undefined;
  private length = 0;
  private readonly ids: Buffer[] = [];
  private readonly sealed: SealedBlob[] = [];
  /** Ids sealed already: a piece repeated within the file (zeroes at a segment's end) is stored once. */
  private readonly seen = new Set<string>();
  /** Cut by `cut`, not sealed yet. */
  private pendingIds: Buffer[] = [];
  private pendingPieces: Buffer[] = [];

  constructor(
    private readonly codec: ChunkCodec,
    /** Bytes at the start already stored (a streamed segment's earlier flushes): hashed, not cut. */
    private readonly priorLength = 0,
    /** The file's SHA-256, when the caller has it: not computed again. */
    private readonly sha256?: string,
  ) {
    this.hash = sha256 === undefined ? createHash('sha256') : undefined;
  }

  /** The file's next bytes: cut in pieces from their start (or from the prior length's end), sealed in groups. */
  add(bytes: Buffer): void {
    this.cut(bytes);
    this.seal();
  }

  /**
   * `add` in two halves, for a thread that lets other work run between them:
   * hashes and cuts `bytes` (which must stay as they are until `seal`).
   */
  cut(bytes: Buffer): void {
    this.hash?.update(bytes);
    const ids = this.pendingIds;
    const pieces = this.pendingPieces;
    const from = Math.max(0, this.priorLength - this.length);
    for (let o = from; o < bytes.length; o += WAL_CHUNK) {
      const piece = bytes.subarray(o, Math.min(o + WAL_CHUNK, bytes.length));
      const id = this.codec.id(piece);
      this.ids.push(id);
      const key = id.toString('latin1');
      if (this.seen.has(key)) continue;
      this.seen.add(key);
      ids.push(id);
      pieces.push(piece);
    }
    this.length += bytes.length;
  }

  /** Compresses and seals what `cut` cut. */
  seal(): void {
    const ids = this.pendingIds;
    const pieces = this.pendingPieces;
    this.pendingIds = [];
    this.pendingPieces = [];
    if (pieces.length === 0) return;
    this.codec.startBatch();
    for (const blob of sealInGroups(this.codec, ids, pieces, WAL_GROUP)) {
      blob.blob = Buffer.from(blob.blob);
      this.sealed.push(blob);
    }
  }

  finish(): SealedWal {
    return { size: this.length, sha256: this.sha256 ?? this.hash!.digest('hex'), ids: this.ids, sealed: this.sealed };
  }
}
