/**
 * Alerts through a real Prometheus: the agent watches a real cluster's WAL
 * archive and Prometheus scrapes it with deploy/prometheus's rules loaded.
 * Archiving is broken (the repository refuses writes) while the server keeps
 * writing: the RPO alert goes to firing in Prometheus's own API, and `coffer
 * status` says the same; writes allowed again, it resolves, and an idle
 * server with everything archived has an RPO of 0. Every panel of the Grafana
 * dashboard in deploy/grafana runs its query against that Prometheus.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { COFFER_BIN, coffer } from '../support/cli.js';
import { archivingCluster, Cluster, debianInstall } from '../support/pg.js';
import { PrometheusSandbox } from '../support/prometheus.js';
import { until } from '../support/until.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const PASSPHRASE = 'alerts test passphrase';
const RPO_SECONDS = 10;

describe('the RPO alert through a real Prometheus, on PostgreSQL 15', () => {
  const install = debianInstall();
  let work: { dir: string; cleanup: () => Promise<void> };
  let repo: string;
  let cluster: Cluster;
  let agent: ChildProcess | undefined;
  let agentLog = '';
  let prometheus: PrometheusSandbox | undefined;
  let policyFile: string;
  let listen: string;

  const setRepoWritable = async (writable: boolean) => {
    const r = spawn('find', [repo, '-type', 'd', '-exec', 'chmod', writable ? 'u+w' : 'a-w', '{}', '+']);
    await new Promise((resolve) => r.on('close', resolve));
  };

  beforeAll(async () => {
    ({ work, repo, cluster } = await archivingCluster('coffer-alerts-', install, PASSPHRASE));
    // No autovacuum ANALYZE of it later: that is a transaction too, and the idle check wants none.
    await cluster.query('CREATE TABLE t (id serial PRIMARY KEY, at timestamptz DEFAULT now()) WITH (autovacuum_enabled = off)');
    policyFile = join(work.dir, 'policy.yaml');
    await writeFile(
      policyFile,
      `version: 1
clusters:
  main:
    connection: host=127.0.0.1 port=${cluster.port} user=postgres dbname=postgres
    repository: primary
repositories:
  primary:
    location: ${repo}
    keys: { passphrase: { env: ALERTS_TEST_PASSPHRASE } }
schedules:
  - { job: wal, cluster: main }
alerts: { rpoSeconds: ${RPO_SECONDS}, walArchiveLagSeconds: ${RPO_SECONDS} }
agent: { stateDir: ${join(work.dir, 'agent')}, walPollSeconds: 1 }
metrics: { listen: "127.0.0.1:0" }
logs: { format: json }
`,
    );
    agent = spawn(process.execPath, [COFFER_BIN, 'agent', '--policy', policyFile], { env: { PATH: process.env.PATH, HOME: process.env.HOME, ALERTS_TEST_PASSPHRASE: PASSPHRASE }, stdio: ['ignore', 'pipe', 'pipe'] });
    agent.stdout!.on('data', (d: Buffer) => (agentLog += d.toString()));
    agent.stderr!.on('data', (d: Buffer) => (agentLog += d.toString()));
    await until(async () => {
      const s = await readFile(join(work.dir, 'agent', 'status.json'), 'utf8').catch(() => '');
      return s.includes('"listen"');
    }, 'the agent to serve its metrics', 30_000, 100);
    listen = (JSON.parse(await readFile(join(work.dir, 'agent', 'status.json'), 'utf8')) as { listen: string }).listen;
    prometheus = await PrometheusSandbox.start([listen], [join(ROOT, 'deploy/prometheus/coffer-alerts.yml')]);
    await until(() => prometheus!.targetsUp(), 'Prometheus to scrape the agent', 30_000, 250);
  }, 300_000);

  afterAll(async () => {
    if (repo) await setRepoWritable(true);
    if (agent && agent.exitCode === null) {
      agent.kill('SIGTERM');
      await new Promise((r) => agent!.once('close', r));
    }
    await prometheus?.stop();
    await cluster?.stop().catch(() => undefined);
    await work?.cleanup();
  });

  const firing = async (name: string) => (await prometheus!.alerts()).filter((a) => a.labels.alertname === name && a.state === 'firing');

  it('serves health, readiness and its status', async () => {
    expect((await fetch(`http://${listen}/healthz`)).status).toBe(200);
    expect((await fetch(`http://${listen}/readyz`)).status).toBe(200);
    const status = (await (await fetch(`http://${listen}/status`)).json()) as { wal: { cluster: string; ok: boolean }[] };
    expect(status.wal).toEqual([expect.objectContaining({ cluster: 'main', ok: true })]);
    expect((await fetch(`http://${listen}/elsewhere`)).status).toBe(404);
    expect((await fetch(`http://${listen}/metrics`, { method: 'POST' })).status).toBe(405);
  });

  it('breaks archiving: the RPO alert fires in Prometheus and coffer status agrees; archiving again, it resolves', async () => {
    let writing = true;
    // Writes all along, and a segment switch every two seconds: WAL that must reach the repository.
    const load = (async () => {
      for (let i = 0; writing; i++) {
        await cluster.query('INSERT INTO t DEFAULT VALUES');
        if (i % 8 === 7) await cluster.query('SELECT pg_switch_wal()');
        await new Promise((r) => setTimeout(r, 250));
      }
    })();
    try {
      await until(async () => (await firing('CofferRpoBreach')).length === 0, 'no RPO alert while archiving works', 30_000, 500);
      await setRepoWritable(false);
      await until(async () => (await firing('CofferRpoBreach')).length === 1, 'the RPO alert to fire in Prometheus', 90_000, 500);
      const [alert] = await firing('CofferRpoBreach');
      expect(alert!.labels).toMatchObject({ cluster: 'main', stanza: 'main', repository: repo, severity: 'critical' });
      type Status = { alerts: { name: string; about: string }[]; wal: { rpoSeconds: number; archiveFailures: number }[] };
      const read = async () => JSON.parse((await coffer(['status', '--json', '--policy', policyFile])).stdout) as Status;
      // The agent's status is its last sample: PostgreSQL's failed archive_command calls reach pg_stat_archiver as
      // each call ends, which on a slow machine may be a sample after the RPO passed its threshold.
      let status = await read();
      await until(async () => (status = await read()).wal[0]!.archiveFailures > 0, 'coffer status to count the failed archive_command calls', 60_000, 500);
      expect(status.alerts.map((a) => a.name)).toContain('CofferRpoBreach');
      expect(status.wal[0]!.rpoSeconds).toBeGreaterThan(RPO_SECONDS);
      expect(status.wal[0]!.archiveFailures).toBeGreaterThan(0);
      await setRepoWritable(true);
      await until(async () => (await prometheus!.alerts()).every((a) => a.labels.alertname !== 'CofferRpoBreach'), 'the RPO alert to resolve', 120_000, 500);
    } finally {
      writing = false;
      await load;
    }
    // A transaction and a segment switch within one sample, then housekeeping WAL past the switch (a checkpoint):
    // the agent reads the WAL past the archived end, finds no transaction's record there, and the RPO is exactly 0.
    await cluster.archiveNow(120_000);
    await new Promise((r) => setTimeout(r, 1500));
    await cluster.query('INSERT INTO t DEFAULT VALUES');
    const [{ wal }] = (await cluster.query<{ wal: string }>('SELECT pg_walfile_name(pg_switch_wal()) AS wal')) as [{ wal: string }];
    await cluster.query('CHECKPOINT');
    await cluster.waitArchived(wal, 120_000);
    await new Promise((r) => setTimeout(r, 4000));
    type Wal = { rpoSeconds: number; unarchivedBytes: number; archiveLagSeconds: number; walReadError?: string };
    const walNow = async () => JSON.parse((await coffer(['status', '--json', '--policy', policyFile])).stdout) as { alerts: { name: string }[]; wal: Wal[] };
    const idle = await walNow();
    expect(idle.wal[0]!.walReadError).toBeUndefined();
    expect(idle.wal[0]!.unarchivedBytes).toBeGreaterThan(0);
    expect(idle.wal[0]!.unarchivedBytes).toBeLessThan(64 * 1024);
    expect(idle.wal[0]!.rpoSeconds).toBe(0);
    expect(idle.wal[0]!.archiveLagSeconds).toBe(0);
    expect(idle.alerts).toEqual([]);
    await until(
      async () => {
        const r = (await prometheus!.query('coffer_wal_rpo_seconds{cluster="main"}')).result as { value: [number, string] }[];
        return r.length === 1 && r[0]!.value[1] === '0';
      },
      'Prometheus to scrape an RPO of 0',
      30_000,
      500,
    );
    expect((await firing('CofferWalArchiveLag')).length).toBe(0);
    // A transaction after it, not yet archived: counted from the last sample before it.
    await cluster.query('INSERT INTO t DEFAULT VALUES');
    await new Promise((r) => setTimeout(r, 3000));
    expect((await walNow()).wal[0]!.rpoSeconds).toBeGreaterThanOrEqual(2);
  }, 300_000);

  it('every panel of the Grafana dashboard runs its query against Prometheus', async () => {
    const dashboard = JSON.parse(await readFile(join(ROOT, 'deploy/grafana/coffer-dashboard.json'), 'utf8')) as { panels: { title: string; targets: { expr: string }[] }[] };
    expect(dashboard.panels.length).toBeGreaterThan(10);
    for (const panel of dashboard.panels) {
      for (const t of panel.targets) {
        const r = await prometheus!.query(t.expr).catch((e: Error) => {
          throw new Error(`panel ${JSON.stringify(panel.title)}: ${e.message}`);
        });
        expect(['vector', 'scalar', 'matrix'], panel.title).toContain(r.resultType);
      }
    }
    // The agent's own series are there to draw.
    for (const expr of ['coffer_wal_rpo_seconds', 'coffer_wal_ready_files', 'coffer_wal_pg_wal_bytes', 'coffer_agent_process_resident_memory_bytes']) {
      const r = await prometheus!.query(expr);
      expect(r.result.length, expr).toBeGreaterThan(0);
    }
  });

  it('stops on SIGTERM with status 0, and says so', async () => {
    agent!.kill('SIGTERM');
    const code = await new Promise<number | null>((r) => agent!.once('close', (c) => r(c)));
    expect(code).toBe(0);
    expect(agentLog).toContain('agent stopped');
    for (const line of agentLog.split('\n').filter(Boolean)) expect(line).not.toContain(PASSPHRASE);
  });
});
