/**
 * Reading a policy file: YAML parsed with positions kept, then validated by
 * the schema; every problem is reported at once, each with the file, line and
 * column and the key path at fault, as a PolicyError (never a crash, whatever
 * the bytes). Unknown keys, bad cron expressions, secrets written inline and
 * names that refer to nothing are problems like any other.
 */
import { readFile } from 'node:fs/promises';
import { isMap, isPair, isScalar, LineCounter, parseDocument, type Document, type Node } from 'yaml';
import type * as z from 'zod/mini';
import en from 'zod/v4/locales/en.js';
import { CofferError } from '@coffer/engine';
import { policyJsonSchema } from './json-schema.js';
import { referenceProblems } from './references.js';
import { policySchema, type Policy } from './schema.js';

export interface PolicyProblem {
  line: number;
  column: number;
  /** Key path, e.g. `clusters.main.connection` (empty for the document). */
  path: string;
  message: string;
}

/** A policy file that does not parse or validate; `problems` lists each, in file order. */
export class PolicyError extends CofferError {
  readonly file: string;
  readonly problems: readonly PolicyProblem[];
  constructor(file: string, problems: readonly PolicyProblem[]) {
    super('COFFER_INVALID_POLICY', `${file}: ${problems.length} problem(s):\n` + problems.map((p) => `  ${file}:${p.line}:${p.column}: ${p.path ? `${p.path}: ` : ''}${p.message}`).join('\n'));
    this.file = file;
    this.problems = problems;
  }
}

const messages = en().localeError;

/** Parses and validates policy text; `file` names it in problems. */
export function parsePolicy(text: string, file: string): Policy {
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, uniqueKeys: true, prettyErrors: false });
  const at = (offset: number) => lines.linePos(offset);
  if (doc.errors.length > 0) {
    throw new PolicyError(
      file,
      doc.errors.map((e) => {
        const pos = at(e.pos[0]);
        return { line: pos.line, column: pos.col, path: '', message: e.message.split('\n')[0]! };
      }),
    );
  }
  let value: unknown;
  try {
    // An alias bomb (a billion laughs) stops here rather than filling memory.
    value = doc.toJS({ maxAliasCount: 100 });
  } catch (e) {
    throw new PolicyError(file, [{ line: 1, column: 1, path: '', message: (e as Error).message.split('\n')[0]! }]);
  }
  const r = policySchema.safeParse(value ?? {}, { error: messages });
  const problems: PolicyProblem[] = referenceProblems(value).map((p) => {
    const pos = at(nodeOffset(doc, p.path));
    return { line: pos.line, column: pos.col, path: p.path.join('.'), message: p.message };
  });
  if (r.success && problems.length === 0) return r.data;
  for (const { issue, path } of r.success ? [] : explain(r.error.issues, [])) {
    if (issue.code === 'unrecognized_keys') {
      for (const key of issue.keys) {
        const pos = at(keyOffset(doc, path, key) ?? nodeOffset(doc, path));
        const near = closest(key, knownKeys(path));
        problems.push({ line: pos.line, column: pos.col, path: [...path, key].join('.'), message: `unknown key${near ? ` (did you mean ${JSON.stringify(near)}?)` : ''}` });
      }
      continue;
    }
    const pos = at(nodeOffset(doc, path));
    const missing = issue.code === 'invalid_type' && / received undefined$/.test(issue.message);
    problems.push({ line: pos.line, column: pos.col, path: path.join('.'), message: missing ? `missing (${issue.message.replace(/^Invalid input: /, '').replace(/, received undefined$/, '')})` : issue.message.replace(/^Invalid input: /, '') });
  }
  problems.sort((a, b) => a.line - b.line || a.column - b.column);
  throw new PolicyError(file, problems);
}

/** Reads and validates the policy at `file`. */
export async function loadPolicy(file: string): Promise<Policy> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    throw new PolicyError(file, [{ line: 0, column: 0, path: '', message: `cannot read it: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}` }]);
  }
  return parsePolicy(text, file);
}

type Issue = z.core.$ZodIssue;

/**
 * Issues with full paths; a union that failed is explained by the branch
 * whose keys matched (so `keys: { passphrase: hunter2 }` says what is wrong
 * with the passphrase, not only that no form of `keys` fits).
 */
function explain(issues: readonly Issue[], prefix: (string | number)[]): { issue: Issue; path: (string | number)[] }[] {
  const out: { issue: Issue; path: (string | number)[] }[] = [];
  for (const issue of issues) {
    const path = [...prefix, ...issue.path.map((p) => (typeof p === 'symbol' ? String(p) : p))];
    if (issue.code === 'invalid_union' && issue.errors.length > 0) {
      // A branch that failed only below its own keys is the one meant.
      const fits = issue.errors.filter((branch) => branch.every((i) => i.path.length > 0 && i.code !== 'unrecognized_keys' && !(i.code === 'invalid_type' && / received undefined$/.test(i.message))));
      if (fits.length === 1) {
        out.push(...explain(fits[0]!, path));
        continue;
      }
    }
    out.push({ issue, path });
  }
  return out;
}

/** The keys the schema allows in the mapping at `path` (from its JSON Schema form). */
function knownKeys(path: readonly (string | number)[]): string[] {
  let node: unknown = policyJsonSchema();
  for (const step of path) {
    const n = node as { properties?: Record<string, unknown>; additionalProperties?: unknown; items?: unknown; anyOf?: unknown[] };
    if (typeof step === 'number') node = n.items;
    else node = n.properties?.[step] ?? (typeof n.additionalProperties === 'object' ? n.additionalProperties : undefined);
    if (!node) return [];
  }
  const n = node as { properties?: Record<string, unknown>; anyOf?: { properties?: Record<string, unknown> }[] };
  return [...Object.keys(n.properties ?? {}), ...(n.anyOf ?? []).flatMap((b) => Object.keys(b.properties ?? {}))];
}

/** The known key within two edits of `key`, if exactly one is nearest. */
function closest(key: string, known: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = 3;
  for (const k of known) {
    const d = distance(key.toLowerCase(), k.toLowerCase());
    if (d < bestDistance) {
      best = k;
      bestDistance = d;
    }
  }
  return best;
}

function distance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0]!;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const cur = row[j]!;
      row[j] = Math.min(row[j]! + 1, row[j - 1]! + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = cur;
    }
  }
  return row[b.length]!;
}

/** Where the node at `path` starts; a path that goes missing points at the deepest node that exists (a required key's parent). */
function nodeOffset(doc: Document, path: readonly (string | number)[]): number {
  for (let n = path.length; n >= 0; n--) {
    const node = (n === 0 ? doc.contents : doc.getIn(path.slice(0, n), true)) as Node | null | undefined;
    if (node && typeof node === 'object' && 'range' in node && node.range) return node.range[0];
  }
  return 0;
}

/** Where key `key` of the mapping at `path` is written. */
function keyOffset(doc: Document, path: readonly (string | number)[], key: string): number | undefined {
  const map = path.length === 0 ? doc.contents : doc.getIn(path, true);
  if (!isMap(map)) return undefined;
  for (const item of map.items) {
    if (isPair(item) && isScalar(item.key) && String(item.key.value) === key && item.key.range) return item.key.range[0];
  }
  return undefined;
}
