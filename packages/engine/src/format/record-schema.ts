/**
 * Pieces the schemas of sealed JSON records share. A record that opens under
 * the repository's key is authentic, not necessarily well formed (a bug in a
 * writer, another version): each kind's schema checks what its readers rely
 * on before any of it is used, so a malformed record is a typed
 * CorruptObjectError naming it rather than a TypeError somewhere later.
 * Schemas are loose: fields a later version adds pass through.
 */
import * as z from 'zod/mini';
import en from 'zod/v4/locales/en.js';

// zod/mini rather than zod: the whole of zod (about 750 KB bundled) took some 30 ms to load on every
// command, archive_command calls among them; the mini build is a few dozen KB. It carries no messages
// of its own, so English ones are given per parse (not set globally: an importer's zod is its own).
const messages = en().localeError;

export const HEX_SHA256 = z.string().check(z.regex(/^[0-9a-f]{64}$/, 'expected a SHA-256 in hex'));
export const uint = z.int().check(z.nonnegative());

/** The first thing wrong with `value` under `schema`, as a phrase naming where; undefined when nothing is. */
export function recordProblem(schema: z.ZodMiniType, value: unknown): string | undefined {
  const r = schema.safeParse(value, { error: messages });
  if (r.success) return undefined;
  const issue = r.error.issues[0]!;
  return `${issue.path.length ? issue.path.join('.') : 'the record'}: ${issue.message}`;
}
