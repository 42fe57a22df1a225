/**
 * The policy file fuzzed: the documented example mangled at random (bytes
 * deleted, YAML punctuation, anchors, aliases, tags and tabs inserted, lines
 * swapped) is either a valid policy or a PolicyError whose every problem has
 * a line, a column and a message — never another exception, never a hang.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parsePolicy, PolicyError } from '@coffer/agent';
import { addFigures, sized } from './figures.js';

const EXAMPLE = join(fileURLToPath(new URL('../../', import.meta.url)), 'config/backup-policy.yaml');
const INPUTS = sized(400, 20_000);

describe('fuzzed policy files', () => {
  it(`mangled policy files of any kind give typed problems with positions, never a crash (${INPUTS} inputs)`, async () => {
    const example = await readFile(EXAMPLE, 'utf8');
    const mangle = fc.array(
      fc.oneof(
        fc.record({ op: fc.constant('delete' as const), at: fc.nat(), length: fc.integer({ min: 1, max: 40 }) }),
        fc.record({ op: fc.constant('insert' as const), at: fc.nat(), text: fc.oneof(fc.string(), fc.constantFrom(': ', '\n  - ', '{', '[', '&a ', '*a', '!!binary ', '"', "'", '\t', '---\n', 'version: 2\n', '  unknown: 1\n')) }),
        fc.record({ op: fc.constant('swap' as const), a: fc.nat(), b: fc.nat() }),
      ),
      { minLength: 1, maxLength: 6 },
    );
    fc.assert(
      fc.property(mangle, (ops) => {
        let text = example;
        for (const o of ops) {
          if (o.op === 'delete') {
            const at = o.at % (text.length + 1);
            text = text.slice(0, at) + text.slice(at + o.length);
          } else if (o.op === 'insert') {
            const at = o.at % (text.length + 1);
            text = text.slice(0, at) + o.text + text.slice(at);
          } else {
            const lines = text.split('\n');
            const a = o.a % lines.length;
            const b = o.b % lines.length;
            [lines[a], lines[b]] = [lines[b]!, lines[a]!];
            text = lines.join('\n');
          }
        }
        try {
          parsePolicy(text, 'mangled.yaml');
        } catch (e) {
          if (!(e instanceof PolicyError)) throw e;
          expect(e.problems.length).toBeGreaterThan(0);
          for (const p of e.problems) {
            expect(p.line).toBeGreaterThanOrEqual(1);
            expect(p.column).toBeGreaterThanOrEqual(1);
            expect(p.message.length).toBeGreaterThan(0);
          }
        }
      }),
      { numRuns: INPUTS },
    );
    await addFigures('fuzz-policy', { fuzzInputs: INPUTS });
  }, 600_000);
});
