/**
 * `coffer agent` on a real cluster, with radosgw buckets: started from a
 * policy like the example (short schedules), it takes base backups, keeps
 * WAL flowing into the repository, mirrors to a second bucket (with that
 * bucket's own credentials), expires and collects, and verifies — several
 * cycles — while /metrics shows each job's results and `coffer status
 * --json` agrees. Then SIGTERM in the middle of a (rate-limited) backup:
 * nothing half-written, and the next start catches the interrupted run up.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { COFFER_BIN, coffer } from '../support/cli.js';
import { archivingCluster, Cluster, debianInstall, pgScratch, runAsPostgres, stopArchivers } from '../support/pg.js';
import { newBucket, s3Env, s3Server } from '../support/s3.js';
import { until } from '../support/until.js';

const PASSPHRASE = 'agent test passphrase';
const PGBENCH = '/usr/lib/postgresql/15/bin/pgbench';

interface RunningAgent {
  child: ChildProcess;
  lines: string[];
  exited: Promise<number | null>;
}

function startAgent(policy: string, env: Record<string, string>): RunningAgent {
  const child = spawn(process.execPath, [COFFER_BIN, 'agent', '--policy', policy], {
    env: { PATH: process.env.PATH, HOME: process.env.HOME, AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const lines: string[] = [];
  let rest = '';
  const collect = (d: Buffer) => {
    const parts = (rest + d.toString()).split('\n');
    rest = parts.pop()!;
    lines.push(...parts.filter((l) => l !== ''));
  };
  child.stdout!.on('data', collect);
  child.stderr!.on('data', (d: Buffer) => lines.push(`STDERR ${d.toString()}`));
  const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  return { child, lines, exited };
}

/** Waits as `until` does; on a timeout, the error carries the agent's last log lines. */
async function untilAgent(a: RunningAgent | undefined, cond: () => boolean | Promise<boolean>, what: string, timeoutMs: number, pollMs: number): Promise<void> {
  try {
    await until(cond, what, timeoutMs, pollMs);
  } catch (e) {
    throw new Error(`${(e as Error).message}\nagent log (first 30 and last 30 lines):\n${[...(a?.lines ?? []).slice(0, 30), "…", ...(a?.lines ?? []).slice(-30)].join('\n')}`);
  }
}

async function metricsText(listen: string): Promise<string> {
  const res = await fetch(`http://${listen}/metrics`);
  expect(res.status).toBe(200);
  return res.text();
}

/** The value of a series in Prometheus text, by name and labels it must carry. */
function sample(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const line of text.split('\n')) {
    if (!line.startsWith(name + '{') && !line.startsWith(name + ' ')) continue;
    if (Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`))) return Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return undefined;
}

interface StatusJson {
  running: boolean;
  listen?: string;
  jobs: { id: string; state: string; lastRun?: { ok: boolean; endedAt: string; startedAt: string; steps: { name: string; exitStatus: number; figures: Record<string, number>; labels: { command: string; target: string } }[] }; lastSuccess?: string }[];
  wal: { cluster: string; ok: boolean; rpoSeconds?: number; archiving?: boolean; lsn?: string; archivedThrough?: string }[];
  repositories: { repository: string; mirror?: string; target?: string; ok: boolean; missingObjects?: number; missingBytes?: number; lagSeconds?: number }[];
  alerts: { name: string }[];
}

async function status(policy: string): Promise<StatusJson> {
  const r = await coffer(['status', '--json', '--policy', policy]);
  if (r.status !== 0) throw new Error(`coffer status exited ${r.status}: ${r.stderr}`);
  return JSON.parse(r.stdout) as StatusJson;
}

describe('coffer agent on PostgreSQL 15 with radosgw buckets', () => {
  const install = debianInstall();
  let work: { dir: string; cleanup: () => Promise<void> };
  let cluster: Cluster;
  let primary: string;
  let dr: string;
  let policyFile: string;
  let stateDir: string;
  let agentEnv: Record<string, string>;
  let agent: RunningAgent | undefined;
  const s3 = () => s3Server();

  const policy = (o: { schedules: string; extra?: string }) => `version: 1
clusters:
  main:
    connection: host=127.0.0.1 port=${cluster.port} user=postgres dbname=postgres
    pgdata: ${cluster.data}
    repository: primary
    maxRate: 8MB
repositories:
  primary:
    location: ${primary}
    endpoint: ${s3().endpoint}
    region: ${s3().region}
    keys: { passphrase: { env: AGENT_TEST_PASSPHRASE } }
    credentials:
      accessKeyId: { env: PRIMARY_KEY_ID }
      secretAccessKey: { file: ${join(work.dir, 'primary-secret')} }
    mirrors: [dr]
  dr:
    location: ${dr}
    endpoint: ${s3().endpoint}
    region: ${s3().region}
    keys: { passphrase: { env: AGENT_TEST_PASSPHRASE } }
    credentials:
      accessKeyId: { env: DR_KEY_ID }
      secretAccessKey: { env: DR_SECRET }
schedules:
${o.schedules}
retention: { keepMin: 2, hotDays: 0, warmDays: 0, coldMonths: 0 }
verification:
  others: 0
  readDataDays: 30
  smoke:
    - { database: postgres, sql: "SELECT count(*) FROM pgbench_accounts", expect: { min: 200000 } }
agent: { stateDir: ${stateDir}, walPollSeconds: 1, retryDelaySeconds: 1, stopTimeoutSeconds: 30, repositoryLookSeconds: 15 }
metrics: { listen: "127.0.0.1:0" }
logs: { format: json, level: info }
${o.extra ?? ''}`;

  beforeAll(async () => {
    work = await pgScratch('coffer-agent-');
    primary = `s3://${await newBucket()}/pg`;
    dr = `s3://${await newBucket()}/pg`;
    const env = { ...s3Env(), COFFER_PASSPHRASE: PASSPHRASE };
    const init = await coffer(['--repo', primary, 'init'], env);
    if (init.status !== 0) throw new Error(`init: ${init.stderr}`);
    cluster = await Cluster.create(install, work.dir, { archiveRepo: primary, passphrase: PASSPHRASE, env: s3Env(), checksums: true });
    await cluster.start();
    const bench = await runAsPostgres(PGBENCH, ['-i', '-s', '2', '-q'], cluster.pgEnv);
    if (bench.status !== 0) throw new Error(`pgbench -i: ${bench.stderr}`);
    stateDir = join(work.dir, 'agent-state');
    await writeFile(join(work.dir, 'primary-secret'), s3().secretAccessKey + '\n', { mode: 0o600 });
    // Secrets only under the names the policy gives; none of the AWS_* or COFFER_PASSPHRASE variables.
    agentEnv = { AGENT_TEST_PASSPHRASE: PASSPHRASE, PRIMARY_KEY_ID: s3().accessKeyId, DR_KEY_ID: s3().accessKeyId, DR_SECRET: s3().secretAccessKey };
    policyFile = join(work.dir, 'policy.yaml');
  }, 300_000);

  afterAll(async () => {
    if (agent && agent.child.exitCode === null) {
      agent.child.kill('SIGKILL');
      await agent.exited;
    }
    await cluster?.stop().catch(() => undefined);
    await work?.cleanup();
  });

  it('runs backups, keeps WAL flowing, mirrors, expires, collects and verifies for several cycles; /metrics and coffer status agree', async () => {
    await writeFile(
      policyFile,
      policy({
        schedules: [
          '  - { job: backup, cluster: main, cron: "*/10 * * * * *" }',
          '  - { job: wal, cluster: main }',
          '  - { job: mirror, repository: primary, cron: "3-59/10 * * * * *" }',
          '  - { job: expire, cluster: main, cron: "6-59/10 * * * * *" }',
          '  - { job: gc, repository: primary, cron: "8-59/20 * * * * *" }',
          '  - { job: verify, cluster: main, cron: "*/30 * * * * *", attempts: 2 }',
        ].join('\n'),
      }),
    );
    const check = await coffer(['policy', 'check', '--policy', policyFile]);
    expect(check.status, check.stderr).toBe(0);
    agent = startAgent(policyFile, agentEnv);
    // Writes all along: WAL must keep reaching the repository.
    let writing = true;
    const writer = (async () => {
      while (writing) {
        await cluster.query('UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid = (random() * 199999)::int + 1');
        await new Promise((r) => setTimeout(r, 50));
      }
    })();
    const successes = (s: StatusJson, id: string) => s.jobs.find((j) => j.id === id)?.lastSuccess;
    const seen = new Map<string, Set<string>>();
    try {
      await untilAgent(
        agent,
        async () => {
          const s = await status(policyFile).catch(() => undefined);
          if (!s) return false;
          for (const id of ['backup:main', 'mirror:primary', 'expire:main', 'gc:primary', 'verify:main']) {
            const at = successes(s, id);
            if (at) (seen.get(id) ?? seen.set(id, new Set()).get(id)!).add(at);
          }
          // Several cycles: each job succeeded at least twice (verify: once more after its first).
          return ['backup:main', 'mirror:primary', 'expire:main', 'gc:primary', 'verify:main'].every((id) => (seen.get(id)?.size ?? 0) >= 2);
        },
        'every job of the policy to succeed twice',
        Number(process.env.AGENT_TEST_WAIT ?? 240_000),
        500,
      );
    } finally {
      writing = false;
      await writer;
    }
    let s = await status(policyFile);
    // The repository figures come from a look every repositoryLookSeconds: on a slow machine the last one may
    // predate the second backup.
    await untilAgent(agent, async () => (sample(await metricsText(s.listen!), 'coffer_repository_backups', { command: 'info', repository: primary }) ?? 0) >= 2, 'a repository look after the second backup', 60_000, 500);
    s = await status(policyFile);
    expect(s.running).toBe(true);
    const text = await metricsText(s.listen!);
    for (const job of s.jobs) {
      if (!job.lastRun) continue;
      // Each step's last result as the metrics show it is the one status shows.
      for (const step of job.lastRun.steps) {
        const labels = { command: step.labels.command, ...(step.labels.target ? { target: step.labels.target } : {}) };
        expect(sample(text, 'coffer_job_exit_status', labels), `${job.id} ${step.name}`).toBe(step.exitStatus);
      }
    }
    expect(sample(text, 'coffer_job_success', { command: 'backup' })).toBe(1);
    expect(sample(text, 'coffer_backup_bytes', { command: 'backup', stanza: 'main' })).toBeGreaterThan(20e6);
    expect(sample(text, 'coffer_mirror_copied_objects', { command: 'mirror', target: dr })).toBeGreaterThanOrEqual(0);
    expect(sample(text, 'coffer_verify_ok', { command: 'verify' })).toBe(1);
    expect(sample(text, 'coffer_verify_rto_seconds', { command: 'verify' })).toBeGreaterThan(0);
    expect(sample(text, 'coffer_gc_deleted_bytes', { command: 'gc' })).toBeGreaterThanOrEqual(0);
    expect(sample(text, 'coffer_wal_watch_up', { cluster: 'main' })).toBe(1);
    expect(sample(text, 'coffer_wal_archiving_enabled', { cluster: 'main' })).toBe(1);
    expect(sample(text, 'coffer_alert_threshold_seconds', { alert: 'rpo' })).toBe(900);
    // After the jobs, the repositories as `coffer info` sees them: size, backups, leases, what gc would free.
    expect(sample(text, 'coffer_repository_bytes', { command: 'info', repository: primary })).toBeGreaterThan(1e6);
    expect(sample(text, 'coffer_repository_bytes', { command: 'info', repository: dr })).toBeGreaterThan(0);
    expect(sample(text, 'coffer_repository_backups', { command: 'info', repository: primary })).toBeGreaterThanOrEqual(2);
    expect(sample(text, 'coffer_repository_leases', { command: 'info', repository: primary })).toBeGreaterThanOrEqual(0);
    expect(sample(text, 'coffer_repository_reclaimable_bytes', { command: 'info', repository: primary })).toBeGreaterThanOrEqual(0);
    // How far the mirror is behind, as the agent last measured it (both buckets listed): what status says, /metrics says.
    // (Read between two looks at status that show the same look: one may land between status and /metrics.)
    const lagOf = (x: StatusJson) => x.repositories.find((r) => r.repository === 'primary' && r.mirror === 'dr')!;
    let lag = lagOf(s);
    let lagText = text;
    for (let i = 0; i < 5; i++) {
      const before = lagOf(await status(policyFile));
      lagText = await metricsText(s.listen!);
      lag = lagOf(await status(policyFile));
      if (JSON.stringify(before) === JSON.stringify(lag)) break;
    }
    expect(lag).toMatchObject({ ok: true, target: dr });
    expect(sample(lagText, 'coffer_mirror_missing_objects', { command: 'info', target: dr })).toBe(lag.missingObjects);
    expect(sample(lagText, 'coffer_mirror_missing_bytes', { command: 'info', target: dr })).toBe(lag.missingBytes);
    expect(sample(lagText, 'coffer_mirror_lag_seconds', { command: 'info', target: dr })).toBeLessThan(3600);
    expect(s.repositories.filter((r) => !r.mirror).map((r) => [r.repository, r.ok])).toEqual([
      ['dr', true],
      ['primary', true],
    ]);
    // The jobs' S3 requests, added up by store and operation.
    expect(sample(text, 'coffer_s3_requests_total', { location: primary })).toBeGreaterThan(0);
    expect(sample(text, 'coffer_s3_sent_bytes_total', { location: dr })).toBeGreaterThan(0);
    const rpo = sample(text, 'coffer_wal_rpo_seconds', { cluster: 'main' });
    expect(rpo).toBeDefined();
    expect(rpo!).toBeLessThan(900);
    expect(s.alerts).toEqual([]);
    // Retention removed backups (keep the newest two), and gc freed their space.
    const expireRuns = s.jobs.find((j) => j.id === 'expire:main')!.lastRun!;
    expect(expireRuns.ok).toBe(true);
    const listed = await coffer(['--repo', primary, 'list', '--json'], { ...s3Env(), COFFER_PASSPHRASE: PASSPHRASE });
    expect(listed.status, listed.stderr).toBe(0);
    const backups = JSON.parse(listed.stdout) as { id: string; finishedAt: string }[];
    expect(backups.length).toBeGreaterThanOrEqual(2);
    // Of the backups there when the last expire started, it kept the newest two and the newest verified one.
    // (Backups every 10 s go on after it: a later count alone says how late the expire ran, which a busy
    // machine decides; the CI once saw 4.)
    const expireStart = Date.parse(expireRuns.startedAt);
    expect(backups.filter((b) => Date.parse(b.finishedAt) < expireStart).length).toBeLessThanOrEqual(3);
    // The mirror holds what the primary held at its last run: it restores on its own.
    const mirrored = await coffer(['--repo', dr, 'list', '--json'], { ...s3Env(), COFFER_PASSPHRASE: PASSPHRASE });
    expect(mirrored.status, mirrored.stderr).toBe(0);
    expect((JSON.parse(mirrored.stdout) as unknown[]).length).toBeGreaterThanOrEqual(1);
    const checked = await coffer(['--repo', primary, 'check'], { ...s3Env(), COFFER_PASSPHRASE: PASSPHRASE });
    expect(checked.status, checked.stderr + checked.stdout).toBe(0);
    // One JSON object a line, each naming its job; no secret in any of them.
    const events = agent.lines.filter((l) => !l.startsWith('STDERR')).map((l) => JSON.parse(l) as { msg: string; jobId?: string });
    expect(events.some((e) => e.msg === 'job succeeded' && e.jobId === 'verify:main')).toBe(true);
    for (const line of agent.lines) for (const secret of [PASSPHRASE, s3().secretAccessKey]) expect(line).not.toContain(secret);
  }, 300_000);

  it('SIGTERM during a backup leaves nothing half-written, and the next start catches the interrupted run up', async () => {
    expect(agent).toBeDefined();
    const env = { ...s3Env(), COFFER_PASSPHRASE: PASSPHRASE };
    // Stopped (SIGTERM) and started again with backups only, which take a while (maxRate 8MB, ~30 MB to read).
    agent!.child.kill('SIGTERM');
    expect(await agent!.exited).toBe(0);
    await writeFile(policyFile, policy({ schedules: ['  - { job: backup, cluster: main, cron: "*/10 * * * * *" }', '  - { job: wal, cluster: main }'].join('\n') }));
    const before = JSON.parse((await coffer(['--repo', primary, 'list', '--json'], env)).stdout) as { id: string }[];
    // Every page of the largest table changed: the next backup reads it again, some seconds at 8 MB/s.
    await cluster.query('UPDATE pgbench_accounts SET abalance = abalance + 1');
    await cluster.query('CHECKPOINT');
    // SIGTERM while a backup reads.
    agent = startAgent(policyFile, agentEnv);
    await until(() => agent!.lines.some((l) => l.includes('"step starts"') && l.includes('backup:main')), 'a backup to start', 60_000, 100);
    await new Promise((r) => setTimeout(r, 1500));
    const stopAt = Date.now();
    agent.child.kill('SIGTERM');
    expect(await agent.exited).toBe(0);
    expect(Date.now() - stopAt).toBeLessThan(30_000);
    expect(agent.lines.some((l) => l.includes('job stopped with the agent'))).toBe(true);
    // Nothing half-written: the same backups, and the repository checks clean.
    const after = JSON.parse((await coffer(['--repo', primary, 'list', '--json'], env)).stdout) as { id: string }[];
    expect(after.map((b) => b.id)).toEqual(before.map((b) => b.id));
    const checked = await coffer(['--repo', primary, 'check'], env);
    expect(checked.status, checked.stderr + checked.stdout).toBe(0);
    // The next start resumes: the interrupted backup is caught up and completes.
    agent = startAgent(policyFile, agentEnv);
    await untilAgent(agent, async () => {
      const s = await status(policyFile).catch(() => undefined);
      const b = s?.jobs.find((j) => j.id === 'backup:main');
      return b?.lastRun?.ok === true && Date.parse(b.lastRun.startedAt) > stopAt;
    }, 'the interrupted backup to be caught up', 120_000, 500);
    expect(agent.lines.some((l) => l.includes('catching up a run interrupted'))).toBe(true);
    const final = JSON.parse((await coffer(['--repo', primary, 'list', '--json'], env)).stdout) as { id: string }[];
    expect(final.length).toBeGreaterThan(before.length);
    expect(final.map((b) => b.id)).toEqual(expect.arrayContaining(before.map((b) => b.id)));
  }, 300_000);

  it('coffer audit lists every job of those cycles and verifies the chains; a record deleted by hand is a gap', async () => {
    const env = { ...s3Env(), COFFER_PASSPHRASE: PASSPHRASE };
    // archive_command's calls are confirmed from the archiver's notes and leave no record of their own; the
    // archiver leaves one when it stops (a call that ran the full program leaves a wal-push record).
    await stopArchivers(cluster.data);
    const r = await coffer(['--repo', primary, 'audit', '--json'], env);
    expect(r.status, r.stderr).toBe(0);
    const trail = JSON.parse(r.stdout) as { ok: boolean; records: { key: string; command: string; result: string; host: string; user: string; seen?: { key: string } }[]; problems: string[] };
    expect(trail.problems).toEqual([]);
    for (const command of ['init', 'backup', 'expire', 'gc', 'verify']) expect(trail.records.some((x) => x.command === command && x.result === 'ok'), command).toBe(true);
    const archiving = new Set(['wal-push', 'wal-archiver']);
    expect(trail.records.some((x) => archiving.has(x.command) && x.result === 'ok'), 'WAL archiving').toBe(true);
    // Mirror runs are told of where they wrote: the DR bucket, whose trail also holds the primary's as it was copied.
    const drTrail = JSON.parse((await coffer(['--repo', dr, 'audit', '--json'], env)).stdout) as typeof trail;
    expect(drTrail.problems).toEqual([]);
    expect(drTrail.records.filter((x) => x.command === 'mirror' && x.result === 'ok').length).toBeGreaterThanOrEqual(2);
    expect(drTrail.records.some((x) => x.command === 'backup')).toBe(true);
    // As many successful backups told of as the agent ran (the interrupted one told of as failed, or not at all: it was killed).
    expect(trail.records.filter((x) => x.command === 'backup' && x.result === 'ok').length).toBeGreaterThanOrEqual(3);
    // Who: the agent's jobs ran as root here, archive_command (and the archiver it started) as the server's user.
    for (const x of trail.records) expect(x.user).toBe(archiving.has(x.command) ? 'postgres' : 'root');
    // Deleted by hand from the bucket: a record a later chain names.
    const named = trail.records.find((x) => x.seen)!.seen!.key;
    const { DeleteObjectCommand } = await import('@aws-sdk/client-s3');
    const { s3Client } = await import('../support/s3.js');
    const client = s3Client();
    const [bucket, ...prefix] = primary.slice('s3://'.length).split('/');
    await client.send(new DeleteObjectCommand({ Bucket: bucket, Key: `${prefix.join('/')}/${named}` }));
    client.destroy();
    const after = await coffer(['--repo', primary, 'audit'], env);
    expect(after.status).toBe(15);
    expect(after.stdout).toContain(`names ${named}, which is missing (deleted)`);
  }, 120_000);
});
