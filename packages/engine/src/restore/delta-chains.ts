/**
 * Page deltas applied in memory: for each use of a fetched range, the
 * deltas (read ahead of the restore, `delta-preload.ts`) that lead from the
 * chunk stored whole to the page the backup holds at that place, in the
 * order they apply. A flat byte layout, so that a range's chains cross to a
 * worker thread as one transferred buffer.
 *
 * A step is `id ‖ base id ‖ u32 page length ‖ u32 frame length ‖ frame`:
 * the page's chunk id (what the result is checked against), the chunk id it
 * was taken against (for messages), and the zstd frame.
 */
import { ID_BYTES, type FoundDelta } from '../format/chunk-codec.js';

/** The steps of use `w` of a range lie at `bytes[starts[w], starts[w + 1])`; none for a page stored whole. */
export interface DeltaChains {
  starts: Uint32Array;
  bytes: Uint8Array;
}

/** One delta of a chain. */
export interface DeltaStep extends FoundDelta {
  /** The chunk id of the page the step gives. */
  id: Buffer;
}

const STEP_HEAD = 2 * ID_BYTES + 8;

/** Bytes a step takes. */
export function stepSize(frame: Uint8Array): number {
  return STEP_HEAD + frame.byteLength;
}

/** Writes the step to the page `id` (`rawLength` bytes) from its base `baseId` at `at` of `into`; where the next begins. */
export function writeStep(into: Buffer, at: number, id: Uint8Array, baseId: Uint8Array, rawLength: number, frame: Uint8Array): number {
  into.set(id, at);
  into.set(baseId, at + ID_BYTES);
  into.writeUInt32LE(rawLength, at + 2 * ID_BYTES);
  into.writeUInt32LE(frame.byteLength, at + 2 * ID_BYTES + 4);
  into.set(frame, at + STEP_HEAD);
  return at + STEP_HEAD + frame.byteLength;
}

/** The step at `at` of `bytes` (views of it) and where the next begins. */
export function readStep(bytes: Buffer, at: number): { step: DeltaStep; next: number } {
  const frameLength = bytes.readUInt32LE(at + 2 * ID_BYTES + 4);
  const next = at + STEP_HEAD + frameLength;
  return {
    step: {
      id: bytes.subarray(at, at + ID_BYTES),
      base: bytes.subarray(at + ID_BYTES, at + 2 * ID_BYTES),
      rawLength: bytes.readUInt32LE(at + 2 * ID_BYTES),
      frame: bytes.subarray(at + STEP_HEAD, next),
    },
    next,
  };
}
