/**
 * Runs every runbook in runbooks/ step by step: each step's exit status and
 * output must match what the runbook says. A runbook names the world it runs
 * in (`<!-- runbook-env: postgres -->`: PostgreSQL, radosgw, KMS and BIND
 * as support/runbook-world.ts sets them up, the steps run as the postgres
 * user); what happens to that world between steps — the incident the
 * procedure answers — is written as `<!-- incident … -->` comments, which
 * readers do not see and this test runs where they stand.
 */
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { coffer } from './support/cli.js';
import { postgresWorld, type RunbookWorld } from './support/runbook-world.js';
import { pseudoRandom, scratch, writeTree } from './support/tree.js';

const RUNBOOKS = fileURLToPath(new URL('../runbooks/', import.meta.url));
const BIN = fileURLToPath(new URL('../node_modules/.bin/', import.meta.url));

interface Step {
  code: string;
  exit: number;
  stdout?: RegExp;
  line: number;
  /** A hidden incident (what befalls the world here), not an operator's step. */
  incident: boolean;
}

function parseRunbook(text: string): Step[] {
  const steps: Step[] = [];
  const re = /^```sh([^\n]*)\n([\s\S]*?)^```$|^<!-- incident\n([\s\S]*?)^-->$/gm;
  for (let m = re.exec(text); m; m = re.exec(text)) {
    const line = text.slice(0, m.index).split('\n').length;
    if (m[3] !== undefined) {
      steps.push({ code: m[3], exit: 0, line, incident: true });
      continue;
    }
    const info = m[1]!;
    const exit = /exit=(\d+)/.exec(info);
    if (!exit) throw new Error(`runbook step at line ${line} has no exit=N`);
    const out = /stdout=\/(.*)\/([a-z]*)/.exec(info);
    steps.push({ code: m[2]!, exit: Number(exit[1]), stdout: out ? new RegExp(out[1]!, (out[2] ?? '') + 'm') : undefined, line, incident: false });
  }
  return steps;
}

const PASSPHRASE = 'runbook passphrase';
/** Longer than any step takes (a drill verify of the small cluster takes under a minute). */
const STEP_TIMEOUT_MS = 300_000;

/** A scratch repository and a directory of files to back up (the files runbooks). */
async function filesWorld(dir: string): Promise<RunbookWorld> {
  const env = {
    ...process.env,
    PATH: `${BIN}:${process.env.PATH}`,
    COFFER_REPO: join(dir, 'repo'),
    COFFER_PASSPHRASE: PASSPHRASE,
    SOURCE_DIR: join(dir, 'source'),
    RESTORE_DIR: join(dir, 'restored'),
  };
  await writeTree(env.SOURCE_DIR, [
    { kind: 'file', name: 'app.db', content: pseudoRandom(2_000_000, 5), mode: 0o600, mtimeMs: 1_600_000_000_000 },
    { kind: 'dir', name: 'conf', mode: 0o755, mtimeMs: 1_600_000_000_000, children: [{ kind: 'file', name: 'app.conf', content: Buffer.from('port = 5432\n'), mode: 0o644, mtimeMs: 1_600_000_000_000 }] },
  ]);
  expect((await coffer(['init'], { COFFER_REPO: env.COFFER_REPO, COFFER_PASSPHRASE: env.COFFER_PASSPHRASE })).status).toBe(0);
  return { env, cleanup: async () => undefined };
}

/**
 * Runs one step under bash, as the world's user. Asynchronously: the world's
 * proxies and incident server live in this process, so blocking it would
 * hold up the very traffic the step makes. A step that hangs is killed.
 */
function runStep(code: string, world: RunbookWorld, cwd: string): Promise<{ status: number | null; stdout: string; stderr: string; error?: string }> {
  return new Promise((resolve) => {
    const child = spawn('bash', ['-eo', 'pipefail', '-c', code], { env: world.env, cwd, stdio: ['ignore', 'pipe', 'pipe'], ...(world.as ?? {}) });
    let stdout = '';
    let stderr = '';
    let error: string | undefined;
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => {
      error = `killed after ${STEP_TIMEOUT_MS / 1000} s`;
      child.kill('SIGKILL');
    }, STEP_TIMEOUT_MS);
    child.on('error', (e) => (error = e.message));
    child.on('close', (status) => {
      clearTimeout(timer);
      resolve({ status, stdout, stderr, ...(error ? { error } : {}) });
    });
  });
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

  it('incidents are hidden from readers and run where they stand', () => {
    const steps = parseRunbook(['```sh exit=0', 'coffer list', '```', '<!-- incident', 'psql -c "DROP TABLE t"', '-->', '```sh exit=1', 'false', '```', ''].join('\n'));
    expect(steps.map((s) => [s.incident, s.code.trim(), s.exit])).toEqual([
      [false, 'coffer list', 0],
      [true, 'psql -c "DROP TABLE t"', 0],
      [false, 'false', 1],
    ]);
  });

  for (const book of books) {
    it(`${book}: every step ends as the runbook says`, async () => {
      const text = readFileSync(join(RUNBOOKS, book), 'utf8');
      const steps = parseRunbook(text);
      expect(steps.filter((s) => !s.incident).length).toBeGreaterThan(0);
      const kind = /<!-- runbook-env: (\w+) -->/.exec(text)?.[1] ?? 'files';
      const world = kind === 'postgres' ? await postgresWorld() : await filesWorld(join(work.dir, book));
      try {
        for (const step of steps) {
          const r = await runStep(step.code, world, world.env.WORK ?? work.dir);
          const where = `${book}:${step.line}${step.incident ? ' (incident)' : ''}: ${step.code.trim()}${r.error ? `\n--- ${r.error}` : ''}\n--- stdout\n${r.stdout}\n--- stderr\n${r.stderr}`;
          expect(r.status, where).toBe(step.exit);
          if (step.stdout) expect(r.stdout, where).toMatch(step.stdout);
        }
      } finally {
        await world.cleanup();
      }
    }, 600_000);
  }
});
