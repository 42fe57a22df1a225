/**
 * Pieces the schemas of sealed JSON records share. A record that opens under
 * the repository's key is authentic, not necessarily well formed (a bug in a
 * writer, another version): each kind's schema checks what its readers rely
 * on before any of it is used, so a malformed record is a typed
 * CorruptObjectError naming it rather than a TypeError somewhere later.
 * Schemas are loose: fields a later version adds pass through.
 */
import { z } from 'zod';

export const HEX_SHA256 = z.string().regex(/^[0-9a-f]{64}$/, 'expected a SHA-256 in hex');
export const uint = z.number().int().nonnegative();

/** The first thing wrong with `value` under `schema`, as a phrase naming where; undefined when nothing is. */
export function recordProblem(schema: z.ZodType, value: unknown): string | undefined {
  const r = schema.safeParse(value);
  if (r.success) return undefined;
  const issue = r.error.issues[0]!;
  return `${issue.path.length ? issue.path.join('.') : 'the record'}: ${issue.message}`;
}
