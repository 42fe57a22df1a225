/**
 * Seals chunks for a pack, in groups: chunks are compressed together up to
 * `groupBytes` (small pages, WAL), and a chunk alone — or any chunk when
 * `groupBytes` is 0 — becomes a single-chunk blob.
 */
import type { ChunkCodec } from '../format/chunk-codec.js';
import type { DeltaMember } from '../format/delta-group.js';

/** A sealed blob and the chunks it holds: one, or the members of a group in order (with its base, a page delta's). */
export interface SealedBlob {
  blob: Buffer;
  chunks: { id: Buffer; rawLength: number; base?: Buffer }[];
}

/** Blobs are views into the codec's slab: the caller copies them out before the codec's next `startBatch`. */
export function sealInGroups(codec: ChunkCodec, ids: readonly Buffer[], pieces: readonly Buffer[], groupBytes: number): SealedBlob[] {
  const sealed: SealedBlob[] = [];
  let start = 0;
  let length = 0;
  const flush = (end: number) => {
    if (end === start) return;
    const blob = end - start === 1 ? codec.encode(ids[start]!, pieces[start]!) : codec.encodeGroup(ids.slice(start, end), pieces.slice(start, end));
    const chunks = [];
    for (let i = start; i < end; i++) chunks.push({ id: ids[i]!, rawLength: pieces[i]!.length });
    sealed.push({ blob, chunks });
    start = end;
    length = 0;
  };
  for (let i = 0; i < pieces.length; i++) {
    if (length > 0 && length + pieces[i]!.length > groupBytes) flush(i);
    length += pieces[i]!.length;
  }
  flush(pieces.length);
  return sealed;
}

/**
 * Seals page deltas in delta groups of up to `groupBytes` bytes of the pages
 * they stand for (as many pages as a plain group holds), each member naming
 * its base. Blobs are views into the codec's slab, as `sealInGroups`'s.
 */
export function sealDeltaGroups(codec: ChunkCodec, members: readonly DeltaMember[], groupBytes: number): SealedBlob[] {
  const sealed: SealedBlob[] = [];
  let start = 0;
  let length = 0;
  const flush = (end: number) => {
    if (end === start) return;
    const group = members.slice(start, end);
    sealed.push({ blob: codec.encodeDeltaGroup(group), chunks: group.map((m) => ({ id: Buffer.from(m.id), rawLength: m.rawLength, base: Buffer.from(m.base) })) });
    start = end;
    length = 0;
  };
  for (let i = 0; i < members.length; i++) {
    if (length > 0 && (length + members[i]!.rawLength > groupBytes || i - start === 0xffff)) flush(i);
    length += members[i]!.rawLength;
  }
  flush(members.length);
  return sealed;
}
