/**
 * Page deltas read ahead of a restore's writes. A restore needs each delta
 * of a chain once, and a delta is small (a frame of a few hundred bytes for
 * a page of 8 KiB): with every needed delta in memory, phase 0 writes each
 * place's final page at once — the page stored whole, then its deltas
 * applied in memory, each checked against its chunk id — instead of writing
 * the base, reading it back and writing again once per delta (`plan.ts`).
 * When the deltas would take more than the budget, none is read ahead and
 * the restore goes phase by phase, so memory stays bounded at any size.
 */
import pLimit from 'p-limit';
import { CorruptObjectError } from '../errors.js';
import { ID_BYTES } from '../format/chunk-codec.js';
import { packKey } from '../format/keys-layout.js';
import type { TreeEntry } from '../format/manifest.js';
import type { Repository } from '../repository/repository.js';
import { checkWholePack, fetchRange } from './fetch-range.js';
import { filesUsing, planFetches, type ChunkLookup, type PlanOptions } from './plan.js';

/** What reading ahead costs beyond the frames, per chunk of the restore's table (where each frame lies). */
const PER_CHUNK = 8;

/** Default bound on the deltas a restore reads ahead. */
export const DELTA_PRELOAD_BYTES = 32 * 1024 * 1024;

/** The frames of the needed deltas, by chunk number of the restore's table, in one buffer. */
export class DeltaFrames {
  /** Where chunk `c`'s frame starts in `arena`, or -1. */
  private readonly at: Int32Array;
  private readonly length: Int32Array;
  private used = 0;
  requests = 0;
  bytesFetched = 0;

  /** For a table of `chunks` chunks, with room for the frames in `arena`. */
  constructor(
    chunks: number,
    private readonly arena: Buffer,
  ) {
    this.at = new Int32Array(chunks).fill(-1);
    this.length = new Int32Array(chunks);
  }

  has(c: number): boolean {
    return this.at[c]! >= 0;
  }

  /** Chunk `c`'s frame (a view), or undefined. */
  get(c: number): Buffer | undefined {
    const at = this.at[c]!;
    return at < 0 ? undefined : this.arena.subarray(at, at + this.length[c]!);
  }

  /** Keeps a copy of `frame` (it lies in the codec's cache) for chunk `c`. */
  add(c: number, frame: Buffer): void {
    if (this.used + frame.length > this.arena.length) throw new RangeError(`delta frames exceed the ${this.arena.length} bytes planned`);
    this.used += frame.copy(this.arena, this.used);
    this.at[c] = this.used - frame.length;
    this.length[c] = frame.length;
  }
}

/**
 * Reads every delta that the live uses of `lookup` need (each once, in
 * planned requests, `concurrency` at a time), or nothing when they would
 * take more than `budget` bytes of memory. A delta that fails its seal or
 * names another base than its index record fails the restore, naming its
 * pack and the files that need it.
 */
export async function preloadDeltas(repo: Repository, entries: readonly TreeEntry[], lookup: ChunkLookup, options: { plan: PlanOptions; budget: number; concurrency: number }): Promise<DeltaFrames | undefined> {
  const { table, base } = lookup;
  const wanted = new Uint8Array(table.count);
  // Members of a delta group share its blob (one offset and length): each blob is counted once. A frame is
  // smaller than its share of the blob, so the blobs' bytes bound the frames'.
  const blobs = new Set<number>();
  let blobBytes = 0;
  for (let u = 0; u < lookup.useChunk.length; u++) {
    if (!lookup.live[u]) continue;
    for (let c = lookup.useChunk[u]!; base[c]! >= 0 && !wanted[c]; c = base[c]!) {
      wanted[c] = 1;
      const blob = table.pack[c]! * 2 ** 32 + table.offset[c]!;
      if (!blobs.has(blob)) {
        blobs.add(blob);
        blobBytes += table.length[c]!;
      }
    }
  }
  if (blobBytes === 0 || blobBytes + PER_CHUNK * table.count > options.budget) return undefined;
  const frames = new DeltaFrames(table.count, Buffer.allocUnsafeSlow(blobBytes));
  const limit = pLimit(Math.max(1, options.concurrency));
  const codec = repo.objects.codec;
  await Promise.all(
    planFetches(lookup, options.plan, (c) => wanted[c] === 1).map((r) =>
      limit(async () => {
        const key = packKey(r.pack);
        const affected = () => filesUsing(entries, lookup, r.chunks);
        const data = await fetchRange(repo, r, affected);
        frames.requests++;
        frames.bytesFetched += data.length;
        checkWholePack(r, data, affected);
        for (const c of r.chunks) {
          const at = table.offset[c]! - r.offset;
          const id = table.ids.subarray(c * ID_BYTES, (c + 1) * ID_BYTES);
          const found = codec.findDelta(id, data.subarray(at, at + table.length[c]!));
          if (typeof found === 'string') throw new CorruptObjectError(key, found, filesUsing(entries, lookup, [c]));
          if (!found.base.equals(table.ids.subarray(base[c]! * ID_BYTES, (base[c]! + 1) * ID_BYTES))) {
            throw new CorruptObjectError(key, `chunk ${table.hex(c)} is a delta against ${found.base.toString('hex')}, its index record says ${table.hex(base[c]!)}`, filesUsing(entries, lookup, [c]));
          }
          frames.add(c, found.frame);
        }
      }),
    ),
  );
  return frames;
}
