/**
 * The CPU side of archiving WAL bytes, apart from the I/O: the file's
 * SHA-256, its fixed-size pieces and their keyed ids, and the pieces
 * compressed and sealed in groups. `pushOne` runs it inline; the archiver
 * runs it on worker threads (`wal-seal-pool.ts`), one file per thread.
 */
import { sha256Hex } from '../bytes.js';
import type { ChunkCodec } from '../format/chunk-codec.js';
import { sealInGroups, type SealedBlob } from '../content/sealed-groups.js';

/** Bytes of WAL chunks compressed and sealed as one group blob. */
export const WAL_GROUP = 1024 * 1024;
/** PostgreSQL's default segment size: the read buffer a sealing thread keeps (larger segments get buffers of their own). */
export const SEAL_READ_BUFFER = 16 * 1024 * 1024;
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
export function sealWal(codec: ChunkCodec, data: Buffer, priorLength = 0, sha256 = sha256Hex(data)): SealedWal {
  const pieces: Buffer[] = [];
  for (let o = priorLength; o < data.length; o += WAL_CHUNK) pieces.push(data.subarray(o, Math.min(o + WAL_CHUNK, data.length)));
  const ids = pieces.map((p) => codec.id(p));
  // A piece repeated within the file (zeroes at a segment's end) is stored once.
  const seen = new Set<string>();
  const first = ids.map((id) => {
    const k = id.toString('hex');
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
  codec.startBatch();
  const sealed = sealInGroups(
    codec,
    ids.filter((_, i) => first[i]),
    pieces.filter((_, i) => first[i]),
    WAL_GROUP,
  );
  for (const s of sealed) s.blob = Buffer.from(s.blob);
  return { size: data.length, sha256, ids, sealed };
}
