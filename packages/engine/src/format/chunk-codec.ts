/**
 * How one chunk is stored, composed from the leaves beside it: keyed ids
 * (`chunk-id.ts`), zstd (`compression.ts`), the sealed envelope
 * (`sealed-blob.ts`) and the group layout (`group-blob.ts`).
 *
 * A single chunk is a version-1 blob whose plaintext is a format byte, then
 * the body — 0 = raw, 1 = zstd (2 stays reserved) — sealed with the chunk id
 * as associated data. A group blob (version 2) holds several small chunks
 * compressed together — the new pages of one relation file, which compress
 * far better side by side than one by one — under a fixed associated text.
 * A delta group (a group blob whose plaintext has format 5) holds changed
 * pages as deltas against their previous versions (`page-delta.ts`): a
 * member decodes only with its base's bytes in hand. Every member is still a
 * chunk of its own in the index.
 *
 * Opening verifies the tag, decodes, and recomputes the keyed id: a blob that
 * decrypts but yields other bytes than its id promises is corrupt too. The
 * codec keeps the groups it opened last for their next members (restore and
 * check read a group's members one after another).
 */
import { TAG_BYTES, NONCE_BYTES, SEAL_OVERHEAD } from '../crypto/aead.js';
import { chunkId, chunkIdMatches, ID_BYTES } from './chunk-id.js';
import { Zstd } from './compression.js';
import { decodeGroupHead, encodeGroupHead, findMember, type GroupDirectory } from './group-blob.js';
import { decodeDeltaGroupHead, deltaFrame, encodeDeltaGroup, ENC_GROUP_DELTA, type DeltaDirectory, type DeltaMember } from './delta-group.js';
import { PageDelta } from './page-delta.js';
import { BLOB_HEADER, BLOB_OVERHEAD, BLOB_VERSION, BlobSealer, GROUP_BLOB_VERSION, type Keys } from './sealed-blob.js';

// Ids, envelope constants and keys live in their own leaves; they are re-exported where the codec's users find them.
export { chunkId, chunkIdMatches, ID_BYTES, BLOB_HEADER, BLOB_OVERHEAD, BLOB_VERSION, GROUP_BLOB_VERSION, type Keys };

const GROUP_AAD = Buffer.from('coffer chunk group');
/** Decoded groups kept for the members that follow. */
const GROUP_CACHE = 8;

const ENC_RAW = 0;
const ENC_ZSTD = 1;

type DecodedGroup = {
  /** Where the next search starts. */
  next: number;
  /** The reusable buffer `body` lies in. */
  buffer: Buffer;
} & ({ delta: false; dir: GroupDirectory; body: Buffer } | { delta: true; dir: DeltaDirectory; plain: Buffer });

/** A delta member as found in its group, before its base is applied. */
export interface FoundDelta {
  /** The chunk id of the page the frame was taken against. */
  base: Buffer;
  /** Bytes of the page. */
  rawLength: number;
  /** The frame (a view of the codec's cache: use it before the next decode). */
  frame: Buffer;
}

/** Reused codec state, one per thread. */
export class ChunkCodec {
  private readonly keys: Keys;
  private readonly zstd: Zstd;
  private readonly sealer: BlobSealer;

  private readonly level: number;

  constructor(keys: Keys, compressionLevel: number) {
    this.keys = keys;
    this.level = compressionLevel;
    this.zstd = new Zstd(compressionLevel);
    this.sealer = new BlobSealer(keys);
  }

  /**
   * Starts a batch: blobs from earlier `encode` calls may be overwritten from
   * now on. Callers copy blobs out (into a pack or a message) before this.
   */
  startBatch(): void {
    this.sealer.startBatch();
  }

  id(plaintext: Uint8Array): Buffer {
    return chunkId(this.keys.idKey, plaintext);
  }

  /**
   * Compresses (when it shrinks) and seals a chunk. The blob returned is a view
   * into the sealer's slab, valid until the next `startBatch`.
   */
  encode(id: Uint8Array, plaintext: Uint8Array): Buffer {
    const body = this.zstd.shrink(plaintext);
    return this.sealer.seal(BLOB_VERSION, id, Buffer.of(body !== plaintext ? ENC_ZSTD : ENC_RAW), body);
  }

  /**
   * Compresses several chunks together and seals them as one group blob (a
   * view into the slab, like `encode`'s). `ids[i]` names `pieces[i]`.
   */
  encodeGroup(ids: readonly Uint8Array[], pieces: readonly Uint8Array[]): Buffer {
    if (ids.length !== pieces.length) throw new RangeError(`${ids.length} ids for ${pieces.length} chunks`);
    const whole = pieces.length === 1 ? pieces[0]! : (adjacent(pieces) ?? Buffer.concat(pieces));
    const body = this.zstd.shrink(whole);
    const head = encodeGroupHead(ids, pieces.map((p) => p.byteLength), body !== whole);
    return this.sealer.seal(GROUP_BLOB_VERSION, GROUP_AAD, head, body);
  }

  /**
   * Seals changed pages as one delta group (a view into the slab, like
   * `encode`'s). Each member's frame is already compressed (`deltaOf`).
   */
  encodeDeltaGroup(members: readonly DeltaMember[]): Buffer {
    return this.sealer.seal(GROUP_BLOB_VERSION, GROUP_AAD, encodeDeltaGroup(members), Buffer.alloc(0));
  }

  private pageDelta: PageDelta | undefined;

  /** The delta of `page` against `base` (a copy), or undefined when it is not smaller than `limit` bytes (`PageDelta.encode`). */
  deltaOf(page: Uint8Array, base: Uint8Array, limit?: number): Buffer | undefined {
    this.pageDelta ??= new PageDelta(this.level);
    const frame = this.pageDelta.encode(page, base, limit);
    return frame && Buffer.from(frame);
  }

  /**
   * Opens a blob and checks it against `id`; returns the plaintext, or a reason
   * it is corrupt (a string, so callers attach the object key and files).
   * With `into`, a compressed chunk is decompressed into that buffer when it
   * fits, and the result is a view of it.
   */
  decode(id: Uint8Array, blob: Uint8Array, into?: Buffer): Buffer | string {
    if (blob[0] === GROUP_BLOB_VERSION) {
      const found = this.findMember(id, blob);
      if (typeof found === 'string') return found;
      if (found.delta) return `chunk ${hex(id)} is a page delta: it decodes only against its base`;
      const { data } = found;
      if (into && into.length >= data.length) return into.subarray(0, data.copy(into));
      return Buffer.from(data);
    }
    const plain = this.sealer.open(blob, id);
    if (typeof plain === 'string') return plain;
    let data: Buffer;
    if (plain[0] === ENC_RAW) data = plain.subarray(1);
    else if (plain[0] === ENC_ZSTD) {
      try {
        data = this.zstd.decompressInto(plain.subarray(1), into);
      } catch (e) {
        return `chunk ${hex(id)} does not decompress: ${(e as Error).message}`;
      }
    } else return `chunk ${hex(id)} has unknown encoding ${plain[0]}`;
    if (!chunkIdMatches(this.keys.idKey, data, id)) return `chunk ${hex(id)} decrypts to bytes with another id`;
    return data;
  }

  private readonly groups = new Map<string, DecodedGroup>();
  private lastGroup: { from: ArrayBufferLike; offset: number; length: number; tag: number[]; group: DecodedGroup } | undefined;
  private readonly spareBodies: Buffer[] = [];

  /**
   * A page delta's member of a delta group: its base id and frame, found and
   * checked against the group's tag but not yet applied (a restore or a
   * check fetches the base first). A member of a plain group is not a delta.
   */
  findDelta(id: Uint8Array, blob: Uint8Array): FoundDelta | string {
    if (blob[0] !== GROUP_BLOB_VERSION) return `chunk ${hex(id)} is stored whole, not as a page delta`;
    const found = this.findMember(id, blob);
    if (typeof found === 'string') return found;
    if (!found.delta) return `chunk ${hex(id)} is stored whole, not as a page delta`;
    return found.found;
  }

  /**
   * A delta member's page, from its group and its base's bytes, checked
   * against `id`: a delta never yields bytes its id does not promise. `base`
   * must not share memory with the result's buffer (`into`).
   */
  decodeDelta(id: Uint8Array, blob: Uint8Array, base: Uint8Array, into?: Buffer): Buffer | string {
    const found = this.findDelta(id, blob);
    if (typeof found === 'string') return found;
    return this.applyDelta(id, found, base, into);
  }

  /**
   * The page a delta found earlier (`findDelta`, its frame copied out of the
   * cache) stands for against `base`, checked against `id`; in `into` when it
   * fits (a view of it). `base` must not share memory with `into`.
   */
  applyDelta(id: Uint8Array, found: FoundDelta, base: Uint8Array, into?: Buffer): Buffer | string {
    if (base.byteLength === 0) return `chunk ${hex(id)}: its base ${hex(found.base)} is empty`;
    this.pageDelta ??= new PageDelta(this.level);
    let page: Buffer;
    try {
      page = this.pageDelta.decode(found.frame, base, found.rawLength, into);
    } catch (e) {
      return `chunk ${hex(id)} does not decode against its base ${hex(found.base)}: ${(e as Error).message}`;
    }
    if (!chunkIdMatches(this.keys.idKey, page, id)) return `chunk ${hex(id)} decodes against its base ${hex(found.base)} to bytes with another id`;
    return page;
  }

  /**
   * A member of a group blob; the group is opened once and kept for its next
   * members. What is returned lies in the cache: callers copy it (group
   * buffers are reused once they leave the cache).
   */
  private findMember(id: Uint8Array, blob: Uint8Array): { delta: false; data: Buffer } | { delta: true; found: FoundDelta } | string {
    // Members of a group are asked for one after another from the same bytes: that case needs no lookup
    // (the same memory, and the same tag, which no other sealed blob has).
    const b = Buffer.from(blob.buffer, blob.byteOffset, blob.byteLength);
    const last = this.lastGroup;
    const tagAt = b.length - TAG_BYTES;
    const sameBlob =
      last !== undefined && last.from === blob.buffer && last.offset === blob.byteOffset && last.length === blob.byteLength && tagAt >= 0 &&
      last.tag[0] === b.readUInt32LE(tagAt) && last.tag[1] === b.readUInt32LE(tagAt + 4) && last.tag[2] === b.readUInt32LE(tagAt + 8) && last.tag[3] === b.readUInt32LE(tagAt + 12);
    let group = sameBlob ? last.group : undefined;
    const cacheKey = group ? '' : b.length >= BLOB_HEADER + SEAL_OVERHEAD ? `${b.toString('latin1', BLOB_HEADER, BLOB_HEADER + NONCE_BYTES)}${b.toString('latin1', b.length - TAG_BYTES)}${b.length}` : '';
    group ??= this.groups.get(cacheKey);
    if (!group) {
      const opened = this.openGroup(b, id);
      if (typeof opened === 'string') return opened;
      group = opened;
      if (this.groups.size >= GROUP_CACHE) {
        const oldest = this.groups.keys().next().value!;
        this.spareBodies.push(this.groups.get(oldest)!.buffer);
        this.groups.delete(oldest);
      }
      this.groups.set(cacheKey, group);
    }
    if (!sameBlob) {
      const tag = [0, 4, 8, 12].map((o) => b.readUInt32LE(tagAt + o));
      this.lastGroup = { from: blob.buffer, offset: blob.byteOffset, length: blob.byteLength, tag, group };
    }
    if (group.delta) {
      // A delta member is told apart by its full id only once decoded: a prefix shared within one group
      // (one chance in 2⁶⁴ per pair) makes the page fail its id check, never pass as another.
      const { dir, plain } = group;
      const i = findMember(dir, id, group.next);
      if (i < 0) return `chunk ${hex(id)} is not in the delta group that the index names`;
      group.next = i + 1;
      return { delta: true, found: { base: dir.bases[i]!, rawLength: dir.lengths[i]!, frame: deltaFrame(plain, dir, i) } };
    }
    const { dir, body } = group;
    const memberOf = (i: number) => body.subarray(dir.offsets[i]!, dir.offsets[i]! + dir.lengths[i]!);
    // A prefix shared by two members is told apart by the full keyed id.
    const i = findMember(dir, id, group.next, (k) => !chunkIdMatches(this.keys.idKey, memberOf(k), id));
    if (i < 0) return `chunk ${hex(id)} is not in the group blob that the index names, or decrypts to bytes with another id`;
    group.next = i + 1;
    return { delta: false, data: memberOf(i) };
  }

  private openGroup(b: Buffer, id: Uint8Array): DecodedGroup | string {
    const plain = this.sealer.open(b, GROUP_AAD);
    if (typeof plain === 'string') return `group holding chunk ${hex(id)}: ${plain}`;
    if (plain[0] === ENC_GROUP_DELTA) {
      // The directory's views and the frames must outlive the sealer's scratch: the plaintext is kept in a buffer of the cache's.
      let buffer = this.spareBodies.pop();
      if (!buffer || buffer.length < plain.length) buffer = Buffer.allocUnsafeSlow(Math.max(plain.length, 256 * 1024));
      const kept = buffer.subarray(0, plain.copy(buffer));
      const dir = decodeDeltaGroupHead(kept);
      if (typeof dir === 'string') {
        this.spareBodies.push(buffer);
        return `delta group holding chunk ${hex(id)} ${dir}`;
      }
      return { delta: true, dir, next: 0, plain: kept, buffer };
    }
    const dir = decodeGroupHead(plain);
    if (typeof dir === 'string') return `group holding chunk ${hex(id)} ${dir}`;
    let buffer = this.spareBodies.pop();
    if (!buffer || buffer.length < dir.total) buffer = Buffer.allocUnsafeSlow(Math.max(dir.total, 256 * 1024));
    let body: Buffer;
    try {
      if (!dir.compressed) body = buffer.subarray(0, plain.copy(buffer, 0, dir.bodyStart));
      else {
        const frame = plain.subarray(dir.bodyStart);
        const size = this.zstd.frameSize(frame);
        if (size !== dir.total) return `group holding chunk ${hex(id)} holds ${size} bytes, its directory says ${dir.total}`;
        body = this.zstd.decompressInto(frame, buffer);
      }
    } catch (e) {
      return `group holding chunk ${hex(id)} does not decompress: ${(e as Error).message}`;
    }
    if (body.length !== dir.total) return `group holding chunk ${hex(id)} holds ${body.length} bytes, its directory says ${dir.total}`;
    return { delta: false, dir, next: 0, body, buffer };
  }

  /** Seals a metadata object (index, manifest) under the current data key. */
  sealObject(plaintext: Uint8Array, aad: Uint8Array): Buffer {
    return this.sealer.sealObject(plaintext, aad);
  }

  openObject(blob: Uint8Array, aad: Uint8Array): Buffer | string {
    return this.sealer.open(blob, aad);
  }

  /** `openObject` over the blob's own bytes, which it consumes (large objects read once). */
  openObjectInPlace(blob: Uint8Array, aad: Uint8Array): Buffer | string {
    return this.sealer.openInPlace(blob, aad);
  }

  compress(data: Uint8Array): Buffer {
    return this.zstd.compress(data);
  }

  decompress(data: Uint8Array): Buffer {
    return this.zstd.decompress(data);
  }

  /** Decompresses into `into` when the frame's declared size fits there (a view of it), else into a new buffer. */
  decompressInto(data: Uint8Array, into: Buffer): Buffer {
    return this.zstd.decompressInto(data, into);
  }

  /** The content size a zstd frame declares, or null. */
  frameSize(data: Uint8Array): number | null {
    return this.zstd.frameSize(data);
  }
}

function hex(b: Uint8Array): string {
  return Buffer.from(b).toString('hex');
}

/** One view over `pieces` when they lie back to back in the same memory (fixed-size WAL pieces do), so grouping them copies nothing. */
function adjacent(pieces: readonly Uint8Array[]): Buffer | undefined {
  const first = pieces[0]!;
  let end = first.byteOffset + first.byteLength;
  for (let i = 1; i < pieces.length; i++) {
    const p = pieces[i]!;
    if (p.buffer !== first.buffer || p.byteOffset !== end) return undefined;
    end += p.byteLength;
  }
  return Buffer.from(first.buffer, first.byteOffset, end - first.byteOffset);
}
