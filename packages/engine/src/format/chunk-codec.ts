/**
 * How one chunk is stored. The plaintext is first encoded — a format byte,
 * then the body — and the encoding is sealed with AES-256-GCM under the data
 * key, with the chunk id as associated data. A stored chunk ("blob") is:
 *
 *   version(1) ‖ keyId(u16 BE) ‖ nonce(12) ‖ ciphertext ‖ tag(16)
 *
 * Format bytes: 0 = raw body, 1 = zstd body. Code 2 is reserved for a zstd body
 * compressed with a base chunk (whose id follows the format byte) as
 * dictionary, the planned page-delta representation.
 *
 * A **group blob** (version 2) holds several small chunks compressed together
 * — the new pages of one relation file, which compress far better side by
 * side than one by one. Its associated data is a fixed text, and its
 * encoding is a directory then the body:
 *
 *   format(3 = zstd, 4 = raw) ‖ u16 n ‖ n × (id prefix(8) ‖ u32 rawLength) ‖ body
 *
 * Every member is still a chunk of its own in the index (all pointing at the
 * group's bytes): a reader finds its member by id prefix and checks the full
 * keyed id of the bytes it gets, as for a single chunk.
 *
 * Opening verifies the tag, decodes, and recomputes the keyed id: a blob that
 * decrypts but yields other bytes than its id promises is corrupt too.
 */
import { createCipheriv, randomBytes } from 'node:crypto';
import { Compressor, Decompressor } from 'zstd-napi';
import zstdBinding from 'zstd-napi/binding.js';
import { NONCE_BYTES, open, seal, SEAL_OVERHEAD, TAG_BYTES } from '../crypto/aead.js';
import { chunkId, chunkIdMatches, ID_BYTES } from './chunk-id.js';

// Ids live in their own leaf; they are re-exported where the codec's users have always found them.
export { chunkId, chunkIdMatches, ID_BYTES };

const { CCtx, DCtx, compressBound, getFrameContentSize } = zstdBinding;

export const BLOB_VERSION = 1;
export const GROUP_BLOB_VERSION = 2;
const GROUP_AAD = Buffer.from('coffer chunk group');
const GROUP_ID_PREFIX = 8;
/** Decoded groups kept for the members that follow (restore and check read a group's members one after another). */
const GROUP_CACHE = 8;
export const BLOB_HEADER = 3;
export const BLOB_OVERHEAD = BLOB_HEADER + SEAL_OVERHEAD + 1;

const ENC_RAW = 0;
const ENC_ZSTD = 1;
const ENC_GROUP_ZSTD = 3;
const ENC_GROUP_RAW = 4;

interface DecodedGroup {
  /** Each member's 8-byte id prefix as two big-endian words. */
  prefixWords: Uint32Array;
  /** Where the next search starts. */
  next: number;
  offsets: number[];
  lengths: number[];
  body: Buffer;
  /** The reusable buffer `body` lies in. */
  buffer: Buffer;
}

export interface Keys {
  /** HMAC key for chunk ids; the same for every data key of a repository, so dedup survives rotation. */
  idKey: Uint8Array;
  /** Data keys by id; `currentKeyId` seals new blobs. */
  dataKeys: ReadonlyMap<number, Uint8Array>;
  currentKeyId: number;
}

/**
 * Reused codec state, one per thread: zstd contexts are costly to create, and
 * the encoder writes into buffers it keeps (a compression scratch buffer and a
 * slab for sealed blobs) so that the hot path leaves little garbage behind —
 * dead buffers otherwise pile up to V8's external-memory trigger in every thread.
 */
export class ChunkCodec {
  private readonly keys: Keys;
  private readonly level: number;
  private readonly compressor = new Compressor();
  private readonly decompressor = new Decompressor();
  private readonly cctx = new CCtx();
  private readonly dctx = new DCtx();
  private scratch = Buffer.alloc(0);
  private slab = Buffer.alloc(0);
  private slabUsed = 0;
  private nonces = Buffer.alloc(0);
  private nonceAt = 0;

  constructor(keys: Keys, compressionLevel: number) {
    this.keys = keys;
    this.level = compressionLevel;
    this.compressor.setParameters({ compressionLevel, contentSizeFlag: true, checksumFlag: false });
  }

  /**
   * Starts a batch: blobs from earlier `encode` calls may be overwritten from
   * now on. Callers copy blobs out (into a pack or a message) before this.
   */
  startBatch(): void {
    this.slabUsed = 0;
  }

  private slabSpace(size: number): Buffer {
    if (this.slabUsed + size > this.slab.length) {
      // Blobs already handed out keep the old slab alive until their batch ends.
      this.slab = Buffer.allocUnsafeSlow(Math.max(2 << 20, size, this.slab.length));
      this.slabUsed = 0;
    }
    const out = this.slab.subarray(this.slabUsed, this.slabUsed + size);
    this.slabUsed += size;
    return out;
  }

  id(plaintext: Uint8Array): Buffer {
    return chunkId(this.keys.idKey, plaintext);
  }

  /**
   * Compresses (when it shrinks) and seals a chunk. The blob returned is a view
   * into the codec's slab, valid until the next `startBatch`.
   */
  encode(id: Uint8Array, plaintext: Uint8Array): Buffer {
    const body = this.compressed(plaintext);
    const useZstd = body !== plaintext;
    return this.sealBlob(BLOB_VERSION, id, Buffer.of(useZstd ? ENC_ZSTD : ENC_RAW), body);
  }

  /**
   * Compresses several chunks together and seals them as one group blob (a
   * view into the slab, like `encode`'s). `ids[i]` names `pieces[i]`.
   */
  encodeGroup(ids: readonly Uint8Array[], pieces: readonly Uint8Array[]): Buffer {
    if (ids.length !== pieces.length || ids.length === 0 || ids.length > 0xffff) throw new RangeError(`a group holds 1–65535 chunks, got ${ids.length}`);
    const whole = pieces.length === 1 ? pieces[0]! : Buffer.concat(pieces);
    const body = this.compressed(whole);
    const head = Buffer.allocUnsafe(3 + ids.length * (GROUP_ID_PREFIX + 4));
    head[0] = body !== whole ? ENC_GROUP_ZSTD : ENC_GROUP_RAW;
    head.writeUInt16BE(ids.length, 1);
    ids.forEach((id, i) => {
      const o = 3 + i * (GROUP_ID_PREFIX + 4);
      head.set(id.subarray(0, GROUP_ID_PREFIX), o);
      head.writeUInt32BE(pieces[i]!.byteLength, o + GROUP_ID_PREFIX);
    });
    return this.sealBlob(GROUP_BLOB_VERSION, GROUP_AAD, head, body);
  }

  /** zstd of `plaintext` in the scratch buffer, or `plaintext` itself when that does not shrink it. */
  private compressed(plaintext: Uint8Array): Uint8Array {
    const bound = compressBound(plaintext.byteLength);
    if (this.scratch.length < bound) this.scratch = Buffer.allocUnsafeSlow(Math.max(bound, 300 * 1024));
    const packedLength = this.cctx.compress(this.scratch, plaintext, this.level);
    return packedLength < plaintext.byteLength ? this.scratch.subarray(0, packedLength) : plaintext;
  }

  private sealBlob(version: number, aad: Uint8Array, head: Uint8Array, body: Uint8Array): Buffer {
    const keyId = this.keys.currentKeyId;
    const nonce = this.nextNonce();
    const cipher = createCipheriv('aes-256-gcm', this.dataKey(keyId), nonce);
    cipher.setAAD(aad);
    const out = this.slabSpace(BLOB_HEADER + NONCE_BYTES + head.byteLength + body.byteLength + TAG_BYTES);
    out[0] = version;
    out[1] = keyId >> 8;
    out[2] = keyId & 0xff;
    nonce.copy(out, BLOB_HEADER);
    let o = BLOB_HEADER + NONCE_BYTES;
    // GCM is a stream mode: each update returns exactly as many bytes as it was given.
    o += cipher.update(head).copy(out, o);
    o += cipher.update(body).copy(out, o);
    cipher.final();
    cipher.getAuthTag().copy(out, o);
    return out;
  }

  /** Random nonces drawn a few hundred at a time: one call to the random source per blob costs more than sealing a page. Each draw is a new buffer, so nonces handed out stay as they are. */
  private nextNonce(): Buffer {
    if (this.nonceAt + NONCE_BYTES > this.nonces.length) {
      this.nonces = randomBytes(NONCE_BYTES * 256);
      this.nonceAt = 0;
    }
    return this.nonces.subarray(this.nonceAt, (this.nonceAt += NONCE_BYTES));
  }

  private dataKey(keyId: number): Uint8Array {
    const key = this.keys.dataKeys.get(keyId);
    if (!key) throw new Error(`data key ${keyId} is not loaded`);
    return key;
  }

  private sealWithHeader(encoded: Uint8Array, aad: Uint8Array): Buffer {
    const keyId = this.keys.currentKeyId;
    const box = seal(this.dataKey(keyId), encoded, aad);
    const head = Buffer.from([BLOB_VERSION, keyId >> 8, keyId & 0xff]);
    return Buffer.concat([head, box]);
  }

  /**
   * Opens a blob and checks it against `id`; returns the plaintext, or a reason
   * it is corrupt (a string, so callers attach the object key and files).
   * With `into`, a compressed chunk is decompressed into that buffer when it
   * fits, and the result is a view of it.
   */
  decode(id: Uint8Array, blob: Uint8Array, into?: Buffer): Buffer | string {
    if (blob[0] === GROUP_BLOB_VERSION) return this.decodeMember(id, blob, into);
    const plain = this.openSealed(blob, id);
    if (typeof plain === 'string') return plain;
    let data: Buffer;
    if (plain[0] === ENC_RAW) data = plain.subarray(1);
    else if (plain[0] === ENC_ZSTD) {
      try {
        const frame = plain.subarray(1);
        const size = getFrameContentSize(frame);
        if (into && size !== null && size <= into.length) data = into.subarray(0, this.dctx.decompress(into, frame));
        else data = this.decompressor.decompress(frame);
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
   * A member of a group blob; the group is opened once and kept for its next
   * members. The bytes returned are a copy (in `into` when it fits): group
   * buffers are reused once they leave the cache.
   */
  private decodeMember(id: Uint8Array, blob: Uint8Array, into?: Buffer): Buffer | string {
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
    const n = group.lengths.length;
    const hi = ((id[0]! << 24) | (id[1]! << 16) | (id[2]! << 8) | id[3]!) >>> 0;
    const lo = ((id[4]! << 24) | (id[5]! << 16) | (id[6]! << 8) | id[7]!) >>> 0;
    // Start after the member found last: members are usually asked for in order.
    for (let k = 0; k < n; k++) {
      const i = (group.next + k) % n;
      if (group.prefixWords[2 * i] !== hi || group.prefixWords[2 * i + 1] !== lo) continue;
      const data = group.body.subarray(group.offsets[i]!, group.offsets[i]! + group.lengths[i]!);
      if (!chunkIdMatches(this.keys.idKey, data, id)) continue;
      group.next = i + 1;
      if (into && into.length >= data.length) return into.subarray(0, data.copy(into));
      return Buffer.from(data);
    }
    return `chunk ${hex(id)} is not in the group blob that the index names, or decrypts to bytes with another id`;
  }

  private openGroup(b: Buffer, id: Uint8Array): DecodedGroup | string {
    const plain = this.openSealed(b, GROUP_AAD);
    if (typeof plain === 'string') return `group holding chunk ${hex(id)}: ${plain}`;
    if (plain.length < 3 || (plain[0] !== ENC_GROUP_ZSTD && plain[0] !== ENC_GROUP_RAW)) return `group holding chunk ${hex(id)} has unknown encoding ${plain[0]}`;
    const n = plain.readUInt16BE(1);
    const dirEnd = 3 + n * (GROUP_ID_PREFIX + 4);
    if (n === 0 || plain.length < dirEnd) return `group holding chunk ${hex(id)} has a truncated directory`;
    const prefixWords = new Uint32Array(n * 2);
    const offsets: number[] = [];
    const lengths: number[] = [];
    let total = 0;
    for (let i = 0; i < n; i++) {
      const o = 3 + i * (GROUP_ID_PREFIX + 4);
      prefixWords[2 * i] = plain.readUInt32BE(o);
      prefixWords[2 * i + 1] = plain.readUInt32BE(o + 4);
      offsets.push(total);
      const len = plain.readUInt32BE(o + GROUP_ID_PREFIX);
      lengths.push(len);
      total += len;
    }
    let buffer = this.spareBodies.pop();
    if (!buffer || buffer.length < total) buffer = Buffer.allocUnsafeSlow(Math.max(total, 256 * 1024));
    let body: Buffer;
    try {
      if (plain[0] === ENC_GROUP_RAW) body = buffer.subarray(0, plain.copy(buffer, 0, dirEnd));
      else {
        const frame = plain.subarray(dirEnd);
        const size = getFrameContentSize(frame);
        if (size !== total) return `group holding chunk ${hex(id)} holds ${size} bytes, its directory says ${total}`;
        body = buffer.subarray(0, this.dctx.decompress(buffer, frame));
      }
    } catch (e) {
      return `group holding chunk ${hex(id)} does not decompress: ${(e as Error).message}`;
    }
    if (body.length !== total) return `group holding chunk ${hex(id)} holds ${body.length} bytes, its directory says ${total}`;
    return { prefixWords, next: 0, offsets, lengths, body, buffer };
  }

  /** Seal a metadata object (index, manifest) under the current data key. */
  sealObject(plaintext: Uint8Array, aad: Uint8Array): Buffer {
    return this.sealWithHeader(plaintext, aad);
  }

  openObject(blob: Uint8Array, aad: Uint8Array): Buffer | string {
    return this.openSealed(blob, aad);
  }

  private openSealed(blob: Uint8Array, aad: Uint8Array): Buffer | string {
    if (blob.byteLength < BLOB_HEADER + SEAL_OVERHEAD || (blob[0] !== BLOB_VERSION && blob[0] !== GROUP_BLOB_VERSION)) return `bad blob header (version ${blob[0]})`;
    const keyId = (blob[1]! << 8) | blob[2]!;
    const key = this.keys.dataKeys.get(keyId);
    if (!key) return `sealed with data key ${keyId}, which the repository config does not hold`;
    const plain = open(key, blob.subarray(BLOB_HEADER), aad);
    return plain ?? 'authentication tag does not verify';
  }

  compress(data: Uint8Array): Buffer {
    return this.compressor.compress(data);
  }

  decompress(data: Uint8Array): Buffer {
    return this.decompressor.decompress(data);
  }
}

function hex(b: Uint8Array): string {
  return Buffer.from(b).toString('hex');
}
