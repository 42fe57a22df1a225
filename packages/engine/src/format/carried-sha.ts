/**
 * Objects whose names cannot carry their SHA-256 (a WAL record is named by
 * its WAL file, a stanza record by its stanza and number) carry it inside:
 *
 *   magic (4 bytes) ‖ SHA-256 of what follows (32 bytes) ‖ sealed body
 *
 * so anyone can verify their stored bytes without keys, like every object.
 */
import { sha256Hex } from '../bytes.js';

const HEAD = 36;

export function wrapCarried(magic: Buffer, sealed: Uint8Array): Buffer {
  return Buffer.concat([magic, Buffer.from(sha256Hex(sealed), 'hex'), sealed]);
}

/** Why `bytes` are not an intact object of this kind, or undefined when they are. */
export function carriedProblem(magic: Buffer, bytes: Uint8Array, what: string): string | undefined {
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (b.length < HEAD || !b.subarray(0, 4).equals(magic)) return `not a ${what}`;
  if (sha256Hex(b.subarray(HEAD)) !== b.subarray(4, HEAD).toString('hex')) return 'SHA-256 of its bytes does not match the one it carries';
  return undefined;
}

/** The sealed body of an object `carriedProblem` found intact. */
export function carriedBody(bytes: Uint8Array): Buffer {
  return Buffer.from(bytes.buffer, bytes.byteOffset + HEAD, bytes.byteLength - HEAD);
}
