/**
 * Chunk ids: HMAC-SHA256 under the repository's id key, keyed so that the
 * store does not reveal whether it holds a known plaintext. Computed for
 * every chunk written and checked for every chunk read back, so this is the
 * hottest hash in Coffer: the HMAC pads are precomputed once per key.
 */
import crypto, { createHmac } from 'node:crypto';
import { bytesEqual } from '../bytes.js';

/** Bytes of a chunk id. */
export const ID_BYTES = 32;

/**
 * Node's one-shot hash (20.12 and later): with the HMAC pads precomputed, an id costs two calls instead of an
 * HMAC object. Digests come back as latin1 text: a Buffer result costs more than hashing the outer block.
 */
const oneShotHash = (crypto as unknown as { hash?: (algorithm: string, data: Uint8Array, encoding: 'latin1') => string }).hash;

interface HmacPads {
  /** ipad-masked key, then room for the message. */
  inner: Buffer;
  /** opad-masked key, then room for the inner digest. */
  outer: Buffer;
}
const padsByKey = new WeakMap<Uint8Array, HmacPads>();

function padsFor(idKey: Uint8Array, length: number): HmacPads {
  let pads = padsByKey.get(idKey);
  if (!pads || pads.inner.length < 64 + length) {
    const inner = Buffer.alloc(64 + Math.max(length, 64 * 1024));
    const outer = Buffer.alloc(64 + 32);
    for (let i = 0; i < 64; i++) {
      inner[i] = (idKey[i] ?? 0) ^ 0x36;
      outer[i] = (idKey[i] ?? 0) ^ 0x5c;
    }
    pads = { inner, outer };
    padsByKey.set(idKey, pads);
  }
  return pads;
}

/** HMAC-SHA256(idKey, plaintext) as 32 latin1 characters, or undefined where the one-shot path does not apply. */
function chunkIdText(idKey: Uint8Array, plaintext: Uint8Array): string | undefined {
  if (!oneShotHash || idKey.length > 64) return undefined;
  const { inner, outer } = padsFor(idKey, plaintext.byteLength);
  inner.set(plaintext, 64);
  outer.write(oneShotHash('sha256', inner.subarray(0, 64 + plaintext.byteLength), 'latin1'), 64, 'latin1');
  return oneShotHash('sha256', outer, 'latin1');
}

/** HMAC-SHA256(idKey, plaintext). */
export function chunkId(idKey: Uint8Array, plaintext: Uint8Array): Buffer {
  const text = chunkIdText(idKey, plaintext);
  return text === undefined ? createHmac('sha256', idKey).update(plaintext).digest() : Buffer.from(text, 'latin1');
}

/** Whether `id` is HMAC-SHA256(idKey, plaintext): the check every chunk read back goes through. */
export function chunkIdMatches(idKey: Uint8Array, plaintext: Uint8Array, id: Uint8Array): boolean {
  const text = chunkIdText(idKey, plaintext);
  if (text === undefined) return bytesEqual(createHmac('sha256', idKey).update(plaintext).digest(), id);
  if (id.length !== ID_BYTES) return false;
  for (let i = 0; i < ID_BYTES; i++) if (text.charCodeAt(i) !== id[i]) return false;
  return true;
}

