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
 * Opening verifies the tag, decodes, and recomputes the keyed id: a blob that
 * decrypts but yields other bytes than its id promises is corrupt too.
 */
import { createHmac } from 'node:crypto';
import { Compressor, Decompressor } from 'zstd-napi';
import { open, seal, SEAL_OVERHEAD } from '../crypto/aead.js';
import { bytesEqual } from '../bytes.js';

export const BLOB_VERSION = 1;
export const BLOB_HEADER = 3;
export const BLOB_OVERHEAD = BLOB_HEADER + SEAL_OVERHEAD + 1;
export const ID_BYTES = 32;

const ENC_RAW = 0;
const ENC_ZSTD = 1;

export interface Keys {
  /** HMAC key for chunk ids; the same for every data key of a repository, so dedup survives rotation. */
  idKey: Uint8Array;
  /** Data keys by id; `currentKeyId` seals new blobs. */
  dataKeys: ReadonlyMap<number, Uint8Array>;
  currentKeyId: number;
}

export function chunkId(idKey: Uint8Array, plaintext: Uint8Array): Buffer {
  return createHmac('sha256', idKey).update(plaintext).digest();
}

/** Reused codec state (zstd contexts are costly to create); one per thread. */
export class ChunkCodec {
  private readonly keys: Keys;
  private readonly compressor = new Compressor();
  private readonly decompressor = new Decompressor();

  constructor(keys: Keys, compressionLevel: number) {
    this.keys = keys;
    this.compressor.setParameters({ compressionLevel, contentSizeFlag: true, checksumFlag: false });
  }

  id(plaintext: Uint8Array): Buffer {
    return chunkId(this.keys.idKey, plaintext);
  }

  /** Compresses (when it shrinks) and seals a chunk. */
  encode(id: Uint8Array, plaintext: Uint8Array): Buffer {
    const packed = this.compressor.compress(plaintext);
    const useZstd = packed.length < plaintext.byteLength;
    const body = useZstd ? packed : plaintext;
    const encoded = Buffer.allocUnsafe(1 + body.byteLength);
    encoded[0] = useZstd ? ENC_ZSTD : ENC_RAW;
    encoded.set(body, 1);
    return this.sealWithHeader(encoded, id);
  }

  private sealWithHeader(encoded: Uint8Array, aad: Uint8Array): Buffer {
    const keyId = this.keys.currentKeyId;
    const key = this.keys.dataKeys.get(keyId);
    if (!key) throw new Error(`data key ${keyId} is not loaded`);
    const box = seal(key, encoded, aad);
    const head = Buffer.from([BLOB_VERSION, keyId >> 8, keyId & 0xff]);
    return Buffer.concat([head, box]);
  }

  /**
   * Opens a blob and checks it against `id`; returns the plaintext, or a reason
   * it is corrupt (a string, so callers attach the object key and files).
   */
  decode(id: Uint8Array, blob: Uint8Array): Buffer | string {
    const plain = this.openSealed(blob, id);
    if (typeof plain === 'string') return plain;
    let data: Buffer;
    if (plain[0] === ENC_RAW) data = plain.subarray(1);
    else if (plain[0] === ENC_ZSTD) {
      try {
        data = this.decompressor.decompress(plain.subarray(1));
      } catch (e) {
        return `chunk ${hex(id)} does not decompress: ${(e as Error).message}`;
      }
    } else return `chunk ${hex(id)} has unknown encoding ${plain[0]}`;
    if (!bytesEqual(this.id(data), id)) return `chunk ${hex(id)} decrypts to bytes with another id`;
    return data;
  }

  /** Seal a metadata object (index, manifest) under the current data key. */
  sealObject(plaintext: Uint8Array, aad: Uint8Array): Buffer {
    return this.sealWithHeader(plaintext, aad);
  }

  openObject(blob: Uint8Array, aad: Uint8Array): Buffer | string {
    return this.openSealed(blob, aad);
  }

  private openSealed(blob: Uint8Array, aad: Uint8Array): Buffer | string {
    if (blob.byteLength < BLOB_HEADER + SEAL_OVERHEAD || blob[0] !== BLOB_VERSION) return `bad blob header (version ${blob[0]})`;
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
