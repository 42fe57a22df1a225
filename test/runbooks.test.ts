/** Runs every runbook in runbooks/ step by step: each step's exit status and output must match what the runbook says. */
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { coffer } from './support/cli.js';
import { pseudoRandom, scratch, writeTree } from './support/tree.js';

const RUNBOOKS = fileURLToPath(new URL('../runbooks/', import.meta.url));
const BIN = fileURLToPath(new URL('../node_modules/.bin/', import.meta.url));

interface Step {
  code: string;
  exit: number;
  stdout?: RegExp;
  line: number;
}

function parseRunbook(text: string): Step[] {
  const steps: Step[] = [];
  const re = /^```sh([^\n]*)\n([\s\S]*?)^```$/gm;
  for (let m = re.exec(text); m; m = re.exec(text)) {
    const info = m[1]!;
    const exit = /exit=(\d+)/.exec(info);
    if (!exit) throw new Error(`runbook step at offset ${m.index} has no exit=N`);
    const out = /stdout=\/(.*)\/([a-z]*)/.exec(info);
    steps.push({ code: m[2]!, exit: Number(exit[1]), stdout: out ? new RegExp(out[1]!, (out[2] ?? '') + 'm') : undefined, line: text.slice(0, m.index).split('\n').length });
  }
  return steps;
}

let work: { dir: string; cleanup: () => Promise<void> };
beforeAll(async () => {
  work = await scratch('coffer-runbook-');
});
afterAll(async () => work.cleanup());

const books = readdirSync(RUNBOOKS).filter((f) => f.endsWith('.md') && f !== 'README.md');

describe('runbooks', () => {
  it('there are runbooks to run', () => {
    expect(books.length).toBeGreaterThan(0);
  });

  for (const book of books) {
    it(`${book}: every step ends as the runbook says`, async () => {
      const steps = parseRunbook(readFileSync(join(RUNBOOKS, book), 'utf8'));
      expect(steps.length).toBeGreaterThan(0);
      const dir = join(work.dir, book);
      const env = {
        ...process.env,
        PATH: `${BIN}:${process.env.PATH}`,
        COFFER_REPO: join(dir, 'repo'),
        COFFER_PASSPHRASE: 'runbook passphrase',
        SOURCE_DIR: join(dir, 'source'),
        RESTORE_DIR: join(dir, 'restored'),
      };
      await writeTree(env.SOURCE_DIR, [
        { kind: 'file', name: 'app.db', content: pseudoRandom(2_000_000, 5), mode: 0o600, mtimeMs: 1_600_000_000_000 },
        { kind: 'dir', name: 'conf', mode: 0o755, mtimeMs: 1_600_000_000_000, children: [{ kind: 'file', name: 'app.conf', content: Buffer.from('port = 5432\n'), mode: 0o644, mtimeMs: 1_600_000_000_000 }] },
      ]);
      expect((await coffer(['init'], { COFFER_REPO: env.COFFER_REPO, COFFER_PASSPHRASE: env.COFFER_PASSPHRASE })).status).toBe(0);
      for (const step of steps) {
        const r = spawnSync('bash', ['-eo', 'pipefail', '-c', step.code], { env, encoding: 'utf8' });
        const where = `${book}:${step.line}: ${step.code.trim()}\n--- stdout\n${r.stdout}\n--- stderr\n${r.stderr}`;
        expect(r.status, where).toBe(step.exit);
        if (step.stdout) expect(r.stdout, where).toMatch(step.stdout);
      }
    });
  }
});
