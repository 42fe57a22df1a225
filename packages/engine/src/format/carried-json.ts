/**
 * Unsealed JSON records that carry their own SHA-256 (`carried-sha.ts`):
 * leases, and the failover decision log's leaders and votes. Nothing in them
 * is secret, and tools without the repository's keys write them.
 */
import type * as z from 'zod/mini';
import { CorruptObjectError } from '../errors.js';
import { carriedBody, carriedProblem, wrapCarried } from './carried-sha.js';
import { recordProblem } from './record-schema.js';

export function encodeCarriedJson(magic: Buffer, value: unknown): Buffer {
  return wrapCarried(magic, Buffer.from(JSON.stringify(value)));
}

/** The record stored under `key`: intact (its SHA-256), JSON, and of `schema`; a typed CorruptObjectError naming `key` otherwise. */
export function decodeCarriedJson(key: string, bytes: Uint8Array, magic: Buffer, what: string, schema: z.ZodMiniType): unknown {
  const problem = carriedProblem(magic, bytes, what);
  if (problem) throw new CorruptObjectError(key, problem);
  let value: unknown;
  try {
    value = JSON.parse(carriedBody(bytes).toString('utf8'));
  } catch (e) {
    throw new CorruptObjectError(key, `does not parse: ${(e as Error).message}`);
  }
  const wrong = recordProblem(schema, value);
  if (wrong) throw new CorruptObjectError(key, `not a well-formed ${what}: ${wrong}`);
  return value;
}
