/**
 * Every option of every `coffer` command that parses its value, given
 * malformed values: each is refused with InvalidArgumentError naming the
 * option (exit 3 through the CLI, the message on one line; a value outside
 * a list of choices is a usage error, exit 2), or taken as a value it can
 * be — never an untyped error. Options are found by walking the
 * command tree, so a new option joins without being listed here.
 */
import { Writable } from 'node:stream';
import fc from 'fast-check';
import type { Command, Option } from 'commander';
import { describe, expect, it } from 'vitest';
import { buildProgram, EXIT_CODES, EXIT_USAGE, runCli, type CliIo } from '@coffer/cli';
import { CofferError, InvalidArgumentError } from '@coffer/engine';
import { addFigures, sized } from './figures.js';

/** Values no number, duration, size, time or choice should be taken from. */
const MALFORMED = ['', ' ', 'x', 'NaN', 'Infinity', '-', '--', '1e999', '0x', '12abc', '\u0000', '9'.repeat(400), '-99999999999', 'null', '[]', '{}', '%s%n', '../../etc/passwd'];

function sink(): NodeJS.WriteStream & { text: () => string } {
  let text = '';
  const w = new Writable({
    write(chunk: Buffer, _enc, done) {
      text += chunk.toString();
      done();
    },
  }) as unknown as NodeJS.WriteStream & { text: () => string };
  w.text = () => text;
  return w;
}

function io(): CliIo & { out: ReturnType<typeof sink>; err: ReturnType<typeof sink> } {
  const out = sink();
  const err = sink();
  // No repository, no key: a value that is taken leads to a typed "no repository" error, never to work.
  return { stdout: out, stderr: err, env: { PATH: process.env.PATH }, out, err };
}

interface ParsedOption {
  path: string[];
  option: Option;
  parse: (value: string) => unknown;
}

/** Every option that parses its value (a parser or a list of choices), with the command path it belongs to. */
function parsedOptions(): ParsedOption[] {
  const out: ParsedOption[] = [];
  const walk = (cmd: Command, path: string[]) => {
    for (const option of cmd.options as Option[]) {
      const parser = (option as Option & { parseArg?: (v: string, prev: unknown) => unknown }).parseArg;
      const choices = (option as Option & { argChoices?: string[] }).argChoices;
      if (!(option.required || option.optional) || (!parser && !choices)) continue;
      out.push({
        path,
        option,
        parse: (v) => {
          if (choices && !choices.includes(v)) throw new InvalidArgumentError(option.long ?? option.flags, `expected one of ${choices.join(', ')}`);
          // A repeatable option collects into its default (a list).
          return parser ? parser(v, option.defaultValue ?? []) : v;
        },
      });
    }
    for (const sub of cmd.commands as Command[]) walk(sub, [...path, sub.name()]);
  };
  walk(buildProgram(io()), []);
  return out;
}

describe('malformed option values', () => {
  const options = parsedOptions();

  it('the walk finds the options that parse values (a new command’s options join by themselves)', () => {
    expect(options.length).toBeGreaterThan(20);
    const names = options.map((o) => `${o.path.join(' ')} ${o.option.long}`.trim());
    for (const expected of ['gc --memory', 'check --memory', 'expire --keep-hot']) expect(names).toContain(expected);
  });

  it('are refused by a typed error naming the option, or taken as a value — never an untyped error', async () => {
    let inputs = 0;
    let untyped = 0;
    for (const o of options) {
      let refused = 0;
      const judge = (value: string) => {
        inputs++;
        try {
          o.parse(value);
        } catch (e) {
          if (!(e instanceof CofferError)) {
            untyped++;
            throw new Error(`${o.path.join(' ')} ${o.option.long} ${JSON.stringify(value)}: untyped ${(e as Error).name}: ${(e as Error).message}`);
          }
          expect(e).toBeInstanceOf(InvalidArgumentError);
          expect(e.message).toContain(o.option.long!.replace(/^--/, ''));
          refused++;
        }
      };
      for (const value of MALFORMED) judge(value);
      fc.assert(fc.property(fc.string({ maxLength: 40 }), (v) => judge(v)), { numRuns: sized(40, 400) });
      // An option that takes every malformed value parses nothing.
      expect(refused, `${o.path.join(' ')} ${o.option.long} refused none of the malformed values`).toBeGreaterThan(0);
    }
    expect(untyped).toBe(0);
    await addFigures('cli-options', { badCliInputs: inputs, untyped });
  });

  it('through the CLI: exit status 3 and one line naming the option, before anything is opened', async () => {
    let runs = 0;
    for (const o of options) {
      const value = MALFORMED.find((v) => {
        try {
          o.parse(v);
          return false;
        } catch {
          return true;
        }
      })!;
      const argv = [...o.path, `${o.option.long}=${value}`];
      const t = io();
      const status = await runCli(argv, t);
      runs++;
      const lines = t.err.text().trim().split('\n');
      expect(lines[0]).toContain(o.option.long!.replace(/^--/, ''));
      if ((o.option as Option & { argChoices?: string[] }).argChoices) {
        // A value outside a list of choices is a usage error, told by the parser with the command's help after it.
        expect(status, `coffer ${argv.join(' ')}: ${t.err.text()}`).toBe(EXIT_USAGE);
      } else {
        expect(status, `coffer ${argv.join(' ')}: ${t.err.text()}`).toBe(EXIT_CODES.COFFER_INVALID_ARGUMENT);
        expect(lines).toHaveLength(1);
      }
      expect(t.out.text()).toBe('');
    }
    await addFigures('cli-options', { badCliInputs: runs });
  });
});
