/** Reading objects whose names carry their SHA-256. */
import { asBuffer, sha256Hex } from '../bytes.js';
import { CorruptObjectError } from '../errors.js';
import { expectedSha } from '../format/keys-layout.js';
import type { ObjectStore } from '../store/object-store.js';

/** Gets an object and checks it against the SHA-256 its name carries (names without one are returned as they are). */
export async function getVerified(store: ObjectStore, key: string): Promise<Buffer> {
  const bytes = asBuffer(await store.get(key));
  const expected = expectedSha(key);
  if (expected && sha256Hex(bytes) !== expected) throw new CorruptObjectError(key, 'SHA-256 of its bytes does not match its name');
  return bytes;
}
