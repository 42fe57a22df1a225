/**
 * AES-256-GCM sealing. A sealed box is `nonce(12) ‖ ciphertext ‖ tag(16)`;
 * the nonce is random per box (96 bits: safe for far more boxes than one data
 * key will ever seal). Associated data binds a box to its role — a chunk's id,
 * or the kind and repository of a metadata object — so boxes cannot be swapped.
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';

export const NONCE_BYTES = 12;
export const TAG_BYTES = 16;
export const SEAL_OVERHEAD = NONCE_BYTES + TAG_BYTES;

export function seal(key: Uint8Array, plaintext: Uint8Array, aad: Uint8Array): Buffer {
  const nonce = randomBytes(NONCE_BYTES);
  const cipher = createCipheriv('aes-256-gcm', key, nonce);
  cipher.setAAD(aad);
  const head = cipher.update(plaintext);
  const tail = cipher.final();
  return Buffer.concat([nonce, head, tail, cipher.getAuthTag()]);
}

/** Opens a sealed box; returns `undefined` when the tag does not verify. */
export function open(key: Uint8Array, box: Uint8Array, aad: Uint8Array): Buffer | undefined {
  if (box.byteLength < SEAL_OVERHEAD) return undefined;
  const buf = Buffer.from(box.buffer, box.byteOffset, box.byteLength);
  const nonce = buf.subarray(0, NONCE_BYTES);
  const tag = buf.subarray(buf.length - TAG_BYTES);
  const decipher = createDecipheriv('aes-256-gcm', key, nonce);
  decipher.setAAD(aad);
  decipher.setAuthTag(tag);
  const head = decipher.update(buf.subarray(NONCE_BYTES, buf.length - TAG_BYTES));
  try {
    const tail = decipher.final(); // empty for GCM: skip the copy a concat would make
    return tail.length === 0 ? head : Buffer.concat([head, tail]);
  } catch {
    return undefined;
  }
}

/** Bytes decrypted per step of `openInPlace`: small enough for the allocator to reuse, large enough to cost nothing. */
const IN_PLACE_STEP = 64 * 1024;

/**
 * `open`, writing the plaintext over the ciphertext in `box` (which it
 * consumes: on failure its contents are garbage) and returning a view of it.
 * For objects of many megabytes read one after another (index objects,
 * manifests): no second buffer of the object's size is allocated, so the
 * process does not hold one per object until the garbage collector and the C
 * allocator give it back.
 */
export function openInPlace(key: Uint8Array, box: Uint8Array, aad: Uint8Array): Buffer | undefined {
  if (box.byteLength < SEAL_OVERHEAD) return undefined;
  const buf = Buffer.from(box.buffer, box.byteOffset, box.byteLength);
  const decipher = createDecipheriv('aes-256-gcm', key, buf.subarray(0, NONCE_BYTES));
  decipher.setAAD(aad);
  decipher.setAuthTag(buf.subarray(buf.length - TAG_BYTES));
  const end = buf.length - TAG_BYTES;
  let out = 0;
  for (let at = NONCE_BYTES; at < end; at += IN_PLACE_STEP) {
    const piece = decipher.update(buf.subarray(at, Math.min(end, at + IN_PLACE_STEP)));
    // GCM is a stream mode: each piece's plaintext is as long as its ciphertext, written behind the read position.
    piece.copy(buf, out);
    out += piece.length;
  }
  try {
    const tail = decipher.final();
    tail.copy(buf, out);
    out += tail.length;
  } catch {
    return undefined;
  }
  return buf.subarray(0, out);
}