/**
 * The layout of a delta group's plaintext — changed pages of one relation
 * file, each stored as a page delta (`page-delta.ts`) against its base page —
 * and nothing else (no keys, no compression):
 *
 *   format(5) ‖ u16 n ‖ n × (id prefix(8) ‖ u32 rawLength ‖ base id(32) ‖ u32 frameLength) ‖ frames
 *
 * Each frame is already a zstd frame, so the group is not compressed again;
 * grouping saves a blob header, a nonce and a tag per page and lets one range
 * request fetch a file's changed pages. Unlike a plain group (`group-blob.ts`)
 * a member names its base in full: a reader must fetch the base, and garbage
 * collection must keep it, before the member means anything. A reader finds
 * a member by id prefix, decodes its frame against the base's plaintext and
 * checks the page against the member's full keyed id, as for any chunk.
 */
import { GROUP_ID_PREFIX, groupMembers } from './group-blob.js';

export const ENC_GROUP_DELTA = 5;
/** Bytes of a base chunk id. */
export const DELTA_BASE_ID = 32;
const ENTRY = GROUP_ID_PREFIX + 4 + DELTA_BASE_ID + 4;
/** The largest page a member may stand for (PostgreSQL's largest block size is 32 KiB). */
export const MAX_DELTA_PAGE = 1024 * 1024;

/**
 * Deltas of deltas a reader follows before it calls a chain damaged (a loop
 * in the base records): far past any depth a writer takes
 * (`MAX_PAGE_DELTA_DEPTH`, 32).
 */
export const MAX_CHAIN = 64;

export interface DeltaMember {
  /** The page's chunk id (its first 8 bytes are kept). */
  id: Uint8Array;
  /** The chunk id of the page the frame was taken against. */
  base: Uint8Array;
  /** Bytes of the page the frame decodes to. */
  rawLength: number;
  /** The page delta: a zstd frame with the base as its dictionary. */
  frame: Uint8Array;
}

/** A delta group's plaintext. */
export function encodeDeltaGroup(members: readonly DeltaMember[]): Buffer {
  if (members.length === 0 || members.length > 0xffff) throw new RangeError(`a delta group holds 1–65535 pages, got ${members.length}`);
  const bodyStart = 3 + members.length * ENTRY;
  const out = Buffer.allocUnsafe(bodyStart + members.reduce((n, m) => n + m.frame.byteLength, 0));
  out[0] = ENC_GROUP_DELTA;
  out.writeUInt16BE(members.length, 1);
  let at = bodyStart;
  members.forEach((m, i) => {
    if (m.id.byteLength < GROUP_ID_PREFIX || m.base.byteLength !== DELTA_BASE_ID) throw new RangeError('a delta member needs its chunk id and a 32-byte base id');
    if (!(m.rawLength > 0 && m.rawLength <= MAX_DELTA_PAGE)) throw new RangeError(`a delta member stands for 1 B – 1 MiB, got ${m.rawLength}`);
    const o = 3 + i * ENTRY;
    out.set(m.id.subarray(0, GROUP_ID_PREFIX), o);
    out.writeUInt32BE(m.rawLength, o + GROUP_ID_PREFIX);
    out.set(m.base, o + GROUP_ID_PREFIX + 4);
    out.writeUInt32BE(m.frame.byteLength, o + GROUP_ID_PREFIX + 4 + DELTA_BASE_ID);
    out.set(m.frame, at);
    at += m.frame.byteLength;
  });
  return out;
}

export interface DeltaDirectory {
  /** Each member's 8-byte id prefix as two big-endian words (as `findMember` in `group-blob.ts` reads them). */
  prefixWords: Uint32Array;
  /** Each member's page size. */
  lengths: number[];
  /** Each member's base chunk id (views of the plaintext). */
  bases: Buffer[];
  /** Where each member's frame lies in the plaintext. */
  frameOffsets: number[];
  frameLengths: number[];
}

/**
 * Reads a delta group's directory, or says what is wrong with it. The frames
 * must fill the rest of the plaintext exactly: a group cut short or with
 * bytes appended is damaged, not partly readable.
 */
export function decodeDeltaGroupHead(plain: Buffer): DeltaDirectory | string {
  const n = groupMembers(plain, [ENC_GROUP_DELTA], ENTRY);
  if (typeof n === 'string') return n;
  const bodyStart = 3 + n * ENTRY;
  const prefixWords = new Uint32Array(n * 2);
  const lengths: number[] = [];
  const bases: Buffer[] = [];
  const frameOffsets: number[] = [];
  const frameLengths: number[] = [];
  let at = bodyStart;
  for (let i = 0; i < n; i++) {
    const o = 3 + i * ENTRY;
    prefixWords[2 * i] = plain.readUInt32BE(o);
    prefixWords[2 * i + 1] = plain.readUInt32BE(o + 4);
    const rawLength = plain.readUInt32BE(o + GROUP_ID_PREFIX);
    if (rawLength === 0 || rawLength > MAX_DELTA_PAGE) return `has a delta member of ${rawLength} bytes`;
    lengths.push(rawLength);
    bases.push(plain.subarray(o + GROUP_ID_PREFIX + 4, o + GROUP_ID_PREFIX + 4 + DELTA_BASE_ID));
    const frameLength = plain.readUInt32BE(o + GROUP_ID_PREFIX + 4 + DELTA_BASE_ID);
    frameOffsets.push(at);
    frameLengths.push(frameLength);
    at += frameLength;
  }
  if (at !== plain.length) return at > plain.length ? 'has delta frames cut short' : 'has bytes after its delta frames';
  return { prefixWords, lengths, bases, frameOffsets, frameLengths };
}

/** Member `i`'s frame, a view of the plaintext. */
export function deltaFrame(plain: Buffer, dir: DeltaDirectory, i: number): Buffer {
  return plain.subarray(dir.frameOffsets[i]!, dir.frameOffsets[i]! + dir.frameLengths[i]!);
}
