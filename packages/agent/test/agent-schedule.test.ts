/**
 * The agent's scheduling with a stand-in for `coffer` (a script that notes
 * its arguments and exits with a status the test chooses): runs missed while
 * the agent was down are caught up at start, or skipped where the schedule
 * says so; two jobs on one repository never overlap; a job that fails for a
 * reason another try may cure is tried again, one that cannot is not; the
 * state survives the agent.
 */
import { mkdtemp, readFile, rm, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Agent, createLogger, parsePolicy } from '@coffer/agent';
import { Writable } from 'node:stream';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'coffer-agent-schedule-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** A `coffer` that appends "<start> <end> <args>" to calls.log, sleeps, and exits with the status in `status-<job>` (default 0). */
async function fakeCoffer(sleepMs = 300): Promise<string> {
  const path = join(dir, 'fake-coffer.mjs');
  await writeFile(
    path,
    `import { appendFileSync, readFileSync } from 'node:fs';
const args = process.argv.slice(2);
const job = args.find((a) => ['backup', 'expire', 'gc', 'mirror', 'verify', 'drill', 'info'].includes(a));
const start = Date.now();
await new Promise((r) => setTimeout(r, ${sleepMs}));
appendFileSync(${JSON.stringify(join(dir, 'calls.log'))}, start + ' ' + Date.now() + ' ' + args.join(' ') + '\\n');
let status = 0;
try { status = Number(readFileSync(${JSON.stringify(dir)} + '/status-' + job, 'utf8')); } catch {}
process.exit(status);
`,
  );
  return path;
}

const calls = async () =>
  (await readFile(join(dir, 'calls.log'), 'utf8').catch(() => ''))
    .split('\n')
    .filter(Boolean)
    .map((l) => {
      const [start, end, ...args] = l.split(' ');
      return { start: Number(start), end: Number(end), args };
    });

const policy = (schedules: string) =>
  parsePolicy(
    `version: 1
clusters:
  main: { connection: "host=127.0.0.1 port=1 user=postgres dbname=postgres", repository: primary }
repositories:
  primary: { location: ${join(dir, 'repo')}, keys: { passphrase: { env: P } } }
schedules:
${schedules}
agent: { stateDir: ${join(dir, 'state')}, retryDelaySeconds: 0.2 }
`,
    'policy.yaml',
  );

const quiet = () => createLogger({ format: 'json', destination: new Writable({ write: (_c, _e, done) => done() }) });
const until = async (cond: () => Promise<boolean>, ms = 15_000) => {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 50));
  }
};

describe('the agent schedules', () => {
  it('catches up a run missed while it was down (missed: run), and not one marked skip', async () => {
    const bin = await fakeCoffer();
    await mkdir(join(dir, 'state'));
    // The last runs the previous agent started: an hour ago, so every hourly occurrence since was missed.
    const hourAgo = new Date(Date.now() - 3_600_000 - 60_000).toISOString();
    await writeFile(join(dir, 'state', 'state.json'), JSON.stringify({ version: 1, jobs: { 'expire:main': { lastScheduled: hourAgo }, 'gc:primary': { lastScheduled: hourAgo } } }));
    const p = policy('  - { job: expire, cluster: main, cron: "0 * * * *" }\n  - { job: gc, repository: primary, cron: "0 * * * *", missed: skip }');
    const agent = new Agent({ policy: p, policyFile: 'policy.yaml', cofferBin: bin, env: { P: 'x', PATH: process.env.PATH }, logger: quiet() });
    await agent.start();
    try {
      await until(async () => (await calls()).some((c) => c.args.includes('expire')));
      await new Promise((r) => setTimeout(r, 800));
      const all = await calls();
      expect(all.filter((c) => c.args.includes('expire'))).toHaveLength(1);
      expect(all.some((c) => c.args.includes('gc'))).toBe(false);
    } finally {
      await agent.stop();
    }
    const state = JSON.parse(await readFile(join(dir, 'state', 'state.json'), 'utf8')) as { jobs: Record<string, { lastScheduled?: string; lastRun?: { ok: boolean } }> };
    expect(state.jobs['expire:main']!.lastRun!.ok).toBe(true);
    expect(Date.parse(state.jobs['expire:main']!.lastScheduled!)).toBeGreaterThan(Date.parse(hourAgo));
    // Skipped, and remembered as seen: the next start does not count it as missed again.
    expect(Date.parse(state.jobs['gc:primary']!.lastScheduled!)).toBeGreaterThan(Date.parse(hourAgo));
  });

  it('never runs two jobs on one repository at once, and retries only what another try may cure', async () => {
    const bin = await fakeCoffer(400);
    await writeFile(join(dir, 'status-expire'), '14'); // the store unavailable: worth another try
    await writeFile(join(dir, 'status-verify'), '32'); // a finding: not
    const p = policy(
      '  - { job: expire, cluster: main, cron: "* * * * * *", attempts: 2 }\n  - { job: gc, repository: primary, cron: "* * * * * *" }\n  - { job: verify, cluster: main, cron: "* * * * * *", attempts: 3 }',
    );
    const agent = new Agent({ policy: p, policyFile: 'policy.yaml', cofferBin: bin, env: { P: 'x', PATH: process.env.PATH }, logger: quiet() });
    await agent.start();
    try {
      // Wait on what the agent recorded, not on the stand-in's log: the log line is written just before
      // the child exits, and a stop in between would leave that run unrecorded.
      await until(async () => {
        const all = await calls();
        const jobs = agent.status().jobs;
        const done = (id: string) => jobs.find((j) => j.id === id)?.lastRun !== undefined;
        return all.filter((c) => c.args.includes('expire')).length >= 2 && done('expire:main') && done('gc:primary') && done('verify:main');
      });
    } finally {
      await agent.stop();
    }
    const all = (await calls()).filter((c) => !c.args.includes('info')).sort((a, b) => a.start - b.start);
    // One repository: each run starts after the one before it ended.
    for (let i = 1; i < all.length; i++) expect(all[i]!.start, `${all[i - 1]!.args.join(' ')} then ${all[i]!.args.join(' ')}`).toBeGreaterThanOrEqual(all[i - 1]!.end);
    const status = agent.status();
    const verify = status.jobs.find((j) => j.id === 'verify:main')!;
    expect(verify.lastRun!.tries).toBe(1);
    expect(verify.lastRun!.ok).toBe(false);
    const expire = status.jobs.find((j) => j.id === 'expire:main')!;
    expect(expire.lastRun!.tries).toBe(2);
    expect(status.alerts.map((a) => a.name)).toEqual(expect.arrayContaining(['CofferJobFailed', 'CofferVerificationFailed']));
  });
});
