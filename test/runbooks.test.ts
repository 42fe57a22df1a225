/**
 * Runs every runbook in runbooks/ step by step: each step's exit status and
 * output must match what the runbook says. A runbook names the world it runs
 * in (`<!-- runbook-env: postgres -->`: a PostgreSQL 15 cluster archiving
 * into the repository, with a base backup, the steps run as the postgres
 * user); what happens to that world between steps — the incident the
 * procedure answers — is written as `<!-- incident … -->` comments, which
 * readers do not see and this test runs where they stand.
 */
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { chown, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { coffer } from './support/cli.js';
import { Cluster, cofferAsPostgres, debianInstall, freePort, pgScratch, postgresUser } from './support/pg.js';
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

/** The world a runbook runs in: its environment, the user its steps run as, and how to take it down. */
interface World {
  env: NodeJS.ProcessEnv;
  as?: { uid: number; gid: number };
  cleanup: () => Promise<void>;
}

const PASSPHRASE = 'runbook passphrase';
/** Longer than any step takes (a drill verify of the small cluster takes under a minute). */
const STEP_TIMEOUT_MS = 300_000;

/** A scratch repository and a directory of files to back up (the files runbooks). */
async function filesWorld(dir: string): Promise<World> {
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
 * Production, as the PostgreSQL runbooks find it: a PostgreSQL 15 cluster
 * (DDL logged with its time, as the PITR procedure advises) archiving into
 * the repository, a shop's `orders` table of 1,000 rows, and a base backup.
 */
async function postgresWorld(): Promise<World> {
  const install = debianInstall();
  const work = await pgScratch('coffer-runbook-pg-');
  const user = postgresUser();
  const repo = join(work.dir, 'repo');
  const init = await cofferAsPostgres(['--repo', repo, 'init'], { COFFER_PASSPHRASE: PASSPHRASE });
  if (init.status !== 0) throw new Error(`coffer init: ${init.stderr}`);
  const cluster = await Cluster.create(install, work.dir, { archiveRepo: repo, passphrase: PASSPHRASE, conf: { log_statement: 'ddl', log_line_prefix: '%m [%p] ', log_timezone: 'UTC' } });
  await cluster.start();
  await cluster.query('CREATE TABLE orders (id int PRIMARY KEY, customer text NOT NULL, amount numeric NOT NULL)');
  await cluster.query(`INSERT INTO orders SELECT g, 'customer-' || (g % 97), (g * 37) % 1000 FROM generate_series(1, 1000) g`);
  const backup = await cofferAsPostgres(['--repo', repo, 'backup'], { COFFER_PASSPHRASE: PASSPHRASE, ...cluster.pgEnv });
  if (backup.status !== 0) throw new Error(`coffer backup: ${backup.stderr}`);
  // The other region's copy, as the agent's mirror job keeps it.
  const mirrorRepo = join(work.dir, 'mirror');
  const mirrored = await cofferAsPostgres(['--repo', repo, 'mirror', '--to', mirrorRepo], { COFFER_PASSPHRASE: PASSPHRASE });
  if (mirrored.status !== 0) throw new Error(`coffer mirror: ${mirrored.stderr}`);
  const notes = join(work.dir, 'notes');
  await mkdir(notes);
  await chown(notes, user.uid, user.gid);
  const env = {
    PATH: `${BIN}:${install.bin}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin`,
    HOME: notes,
    LANG: 'C.UTF-8',
    COFFER_NODE: process.execPath,
    COFFER_REPO: repo,
    COFFER_PASSPHRASE: PASSPHRASE,
    ...cluster.pgEnv,
    PGDATA: cluster.data,
    PGLOG: `${cluster.data}.log`,
    MIRROR_REPO: mirrorRepo,
    NEW_REPO: join(work.dir, 'new-repo'),
    RESTORE_DIR: join(work.dir, 'restored'),
    RESTORE_PORT: String(await freePort()),
    WORK: notes,
  };
  return {
    env,
    as: user,
    cleanup: async () => {
      spawnSync(join(install.bin, 'pg_ctl'), ['-D', env.RESTORE_DIR, '-m', 'immediate', 'stop'], { ...user, stdio: 'ignore' });
      await cluster.stop();
      await work.cleanup();
    },
  };
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
          // A step that hangs fails (spawnSync would hold the test's own timeout off).
          const r = spawnSync('bash', ['-eo', 'pipefail', '-c', step.code], { env: world.env, encoding: 'utf8', cwd: world.env.WORK ?? work.dir, timeout: STEP_TIMEOUT_MS, killSignal: 'SIGKILL', ...(world.as ?? {}) });
          const where = `${book}:${step.line}${step.incident ? ' (incident)' : ''}: ${step.code.trim()}${r.error ? `\n--- ${r.error.message}` : ''}\n--- stdout\n${r.stdout}\n--- stderr\n${r.stderr}`;
          expect(r.status, where).toBe(step.exit);
          if (step.stdout) expect(r.stdout, where).toMatch(step.stdout);
        }
      } finally {
        await world.cleanup();
      }
    }, 600_000);
  }
});
