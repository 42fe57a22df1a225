/**
 * The sealed envelope every stored chunk, group and metadata object shares:
 *
 *   version(1) ‖ keyId(u16 BE) ‖ nonce(12) ‖ ciphertext ‖ tag(16)
 *
 * AES-256-GCM under the data key `keyId` names, with associated data that
 * binds the box to its role (a chunk's id, a fixed text for groups, the kind
 * and repository of a metadata object). Knows nothing of compression or of
 * what the plaintext holds.
 */
import { createCipheriv, randomBytes } from 'node:crypto';
import { NONCE_BYTES, open, openInPlace, seal, SEAL_OVERHEAD, TAG_BYTES } from '../crypto/aead.js';

/** A single chunk, or a metadata object. */
export const BLOB_VERSION = 1;
/** Several chunks compressed together (`group-blob.ts`). */
export const GROUP_BLOB_VERSION = 2;
export const BLOB_HEADER = 3;
/** Envelope bytes around a chunk's body, its format byte included. */
export const BLOB_OVERHEAD = BLOB_HEADER + SEAL_OVERHEAD + 1;

export interface Keys {
  /** HMAC key for chunk ids; the same for every data key of a repository, so dedup survives rotation. */
  idKey: Uint8Array;
  /** Data keys by id; `currentKeyId` seals new blobs. */
  dataKeys: ReadonlyMap<number, Uint8Array>;
  currentKeyId: number;
}

/**
 * Seals into a slab it reuses (dead buffers otherwise pile up to V8's
 * external-memory trigger in every thread) and draws nonces a few hundred at
 * a time (one call to the random source per blob costs more than sealing a page).
 */
export class BlobSealer {
  private readonly keys: Keys;
  private slab = Buffer.alloc(0);
  private slabUsed = 0;
  private nonces = Buffer.alloc(0);
  private nonceAt = 0;

  constructor(keys: Keys) {
    this.keys = keys;
  }

  /** Blobs from earlier `seal` calls may be overwritten from now on: callers copy them out (into a pack or a message) first. */
  startBatch(): void {
    this.slabUsed = 0;
  }

  /** Seals `head ‖ body` under the current data key; the blob is a view into the slab, valid until the next `startBatch`. */
  seal(version: number, aad: Uint8Array, head: Uint8Array, body: Uint8Array): Buffer {
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

  /** Seals a metadata object (index, manifest, record) into a buffer of its own. */
  sealObject(plaintext: Uint8Array, aad: Uint8Array): Buffer {
    const keyId = this.keys.currentKeyId;
    const box = seal(this.dataKey(keyId), plaintext, aad);
    return Buffer.concat([Buffer.from([BLOB_VERSION, keyId >> 8, keyId & 0xff]), box]);
  }

  /** The plaintext of a blob of either version, or why it does not open (a string, so callers attach the object key). */
  open(blob: Uint8Array, aad: Uint8Array): Buffer | string {
    if (blob.byteLength < BLOB_HEADER + SEAL_OVERHEAD || (blob[0] !== BLOB_VERSION && blob[0] !== GROUP_BLOB_VERSION)) return `bad blob header (version ${blob[0]})`;
    const keyId = (blob[1]! << 8) | blob[2]!;
    const key = this.keys.dataKeys.get(keyId);
    if (!key) return `sealed with data key ${keyId}, which the repository config does not hold`;
    const plain = open(key, blob.subarray(BLOB_HEADER), aad);
    return plain ?? 'authentication tag does not verify';
  }

  /** `open`, decrypting over the blob's own bytes (see `openInPlace`): for large objects the caller reads once and drops. */
  openInPlace(blob: Uint8Array, aad: Uint8Array): Buffer | string {
    const key = this.keys.dataKeys.get((blob[1]! << 8) | blob[2]!);
    // Anything that does not open cleanly is left to `open`, which says why.
    if (blob.byteLength < BLOB_HEADER + SEAL_OVERHEAD || (blob[0] !== BLOB_VERSION && blob[0] !== GROUP_BLOB_VERSION) || !key) return this.open(blob, aad);
    return openInPlace(key, blob.subarray(BLOB_HEADER), aad) ?? 'authentication tag does not verify';
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

  /** Each draw is a new buffer, so nonces handed out stay as they are. */
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
}
