/**
 * The quarterly regional evacuation drill, `coffer drill evacuate`, with real
 * parts: region A is a PostgreSQL 15 cluster archiving into bucket A (its
 * KMS key A) and, through --wal-mirror, into bucket B, a copy of the same
 * repository wrapped by KMS key B too; BIND serves the name clients use. The
 * drill's loseRegion command kills region A's server and disables key A.
 * Region B then restores the newest backup from bucket B with key B alone,
 * recovers to the newest WAL bucket B holds, starts, takes the name and a
 * write; the report measures what region A had acknowledged and B lacks
 * (RPO) and lost-to-first-write (RTO), both within the seeds' targets; then
 * everything is put back: region A running, key A enabled, the name on A.
 */
import { createServer, type Server } from 'node:http';
import { spawnSync } from 'node:child_process';
import { appendFile, chown, mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RecoveryDrillReport } from '@coffer/verify';
import { startBind, type BindServer } from '../support/bind.js';
import { coffer } from '../support/cli.js';
import { KmsTestServer } from '../support/kms-server.js';
import { Cluster, cofferAsPostgres, debianInstall, freePort, pgScratch, postgresUser, stopArchivers } from '../support/pg.js';
import { newBucket, s3Env, s3Server } from '../support/s3.js';
import { until } from '../support/until.js';

const NAME = 'primary.db.test';
const ADDRESS_B = '127.0.0.6';
const STANDBY_B = '127.0.0.7';

describe('coffer drill evacuate', () => {
  let work: { dir: string; cleanup: () => Promise<void> };
  let kms: KmsTestServer;
  let bind: BindServer;
  let cluster: Cluster;
  let control: Server;
  const events: string[] = [];

  let keyA: string;
  let envA: Record<string, string>;
  let envB: Record<string, string>;
  let repoA: string;
  let repoB: string;
  let policyFor: (via: 'restore' | 'promote') => Promise<string>;
  let standby: Cluster | undefined;

  /** Region B's standby: the newest backup in bucket B restored as a standby of region A, streaming from it. */
  const buildStandby = async (dir: string, port: number): Promise<Cluster> => {
    const r = await cofferAsPostgres(['--repo', repoB, 'restore', 'latest', '--standby', '--to', dir], envB);
    if (r.status !== 0) throw new Error(`restore --standby: ${r.stderr}`);
    await appendFile(join(dir, 'postgresql.auto.conf'), `primary_conninfo = 'host=127.0.0.1 port=${cluster.port} user=postgres application_name=region-b'\n`);
    const c = await Cluster.adopt(debianInstall(), dir, { env: envB });
    await c.start({ listen_addresses: STANDBY_B, port, hot_standby: 'on' });
    return c;
  };

  afterAll(async () => {
    control?.close();
    await standby?.stop('immediate').catch(() => undefined);
    if (cluster) await stopArchivers(cluster.data).catch(() => undefined);
    await cluster?.stop('immediate').catch(() => undefined);
    await bind?.stop();
    await kms?.stop();
    await work?.cleanup();
  });

  beforeAll(async () => {
    const s3 = s3Server();
    kms = await KmsTestServer.start({ accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey });
    bind = await startBind('db.test', { primary: '127.0.0.1' });
    keyA = await kms.createKey('us-east-1');
    const keyB = await kms.createKey('eu-west-1');
    repoA = `s3://${await newBucket()}/pg`;
    repoB = `s3://${await newBucket()}/pg`;
    const base = { ...s3Env(), AWS_ENDPOINT_URL_KMS: kms.endpoint };
    envA = { ...base, COFFER_KMS_KEY_ID: keyA };
    envB = { ...base, COFFER_KMS_KEY_ID: keyB };

    // Region A's repository, wrapped by key B too, copied to region B; WAL goes to both.
    work = await pgScratch('coffer-evacuate-');
    for (const args of [['init'], ['key', 'add', '--kms-key-id', keyB], ['mirror', '--to', repoB]]) {
      const r = await cofferAsPostgres(['--repo', repoA, ...args], envA);
      if (r.status !== 0) throw new Error(`${args.join(' ')}: ${r.stderr}`);
    }
    cluster = await Cluster.create(debianInstall(), work.dir, { archiveRepo: repoA, walMirrors: [repoB], env: envA, checksums: true, conf: { archive_timeout: '5s' } });
    await cluster.start();
    await cluster.query('CREATE TABLE orders (id int PRIMARY KEY)');
    await cluster.query('INSERT INTO orders SELECT generate_series(1, 1000)');
    const backup = await cofferAsPostgres(['--repo', repoA, 'backup'], { ...envA, ...cluster.pgEnv });
    if (backup.status !== 0) throw new Error(backup.stderr);
    if ((await cofferAsPostgres(['--repo', repoA, 'mirror', '--to', repoB], envA)).status !== 0) throw new Error('mirror');

    // The drill environment's commands: what taking region A away, bringing it back, and rebuilding region B's standby mean here.
    const standbyDir = join(work.dir, 'region-b-standby', 'data');
    const standbyPort = await freePort();
    control = createServer((req, res) => {
      void (async () => {
        try {
          if (req.url === '/lose') {
            kms.setEnabled(keyA, false);
            await cluster.stop('immediate');
          } else if (req.url === '/restore') {
            // The key first: a server started before it archives into a repository it cannot open, and
            // PostgreSQL waits a minute after three failed archive_command calls before it tries again.
            kms.setEnabled(keyA, true);
            await cluster.start();
          } else {
            await standby?.stop('immediate').catch(() => undefined);
            await rm(standbyDir, { recursive: true, force: true });
            standby = await buildStandby(standbyDir, standbyPort);
          }
          events.push(req.url!);
          res.writeHead(200).end();
        } catch (e) {
          res.writeHead(500).end((e as Error).message);
        }
      })();
    });
    await new Promise<void>((r) => control.listen(0, '127.0.0.1', r));
    const port = (control.address() as { port: number }).port;
    const call = (path: string) => JSON.stringify([process.execPath, '-e', `fetch('http://127.0.0.1:${port}${path}', { method: 'POST' }).then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))`]);

    const { uid, gid } = postgresUser();
    for (const d of ['region-b', 'region-b-standby']) {
      await mkdir(join(work.dir, d));
      await chown(join(work.dir, d), uid, gid);
    }
    const restorePort = await freePort();
    policyFor = async (via) => {
      const file = join(work.dir, `policy-${via}.yaml`);
      await writeFile(
        file,
        [
          'version: 1',
          'clusters:',
          `  main: { connection: "host=127.0.0.1 port=${cluster.port} user=postgres dbname=postgres", repository: a }`,
          'repositories:',
          `  a: { location: "${repoA}", keys: { kms: { keyId: "${keyA}" } } }`,
          `  b: { location: "${repoB}", keys: { kms: { keyId: "${keyB}" } } }`,
          'schedules: []',
          'drills:',
          '  evacuate:',
          '    enabled: true',
          '    cluster: main',
          '    repository: b',
          `    loseRegion: ${call('/lose')}`,
          `    restoreRegion: ${call('/restore')}`,
          ...(via === 'promote'
            ? [`    standby: { connection: "host=${STANDBY_B} port=${standbyPort} user=postgres dbname=postgres", rebuild: ${call('/rebuild')} }`]
            : [`    restore: { dataDir: ${join(work.dir, 'region-b', 'data')}, listen: ${ADDRESS_B}, port: ${restorePort} }`]),
          `    dns: { server: 127.0.0.1, port: ${bind.port}, zone: db.test, name: ${NAME}, ttlSeconds: 1, key: { name: ${bind.keyName}, secret: { env: COFFER_TEST_TSIG } } }`,
          `    addresses: { a: 127.0.0.1, b: ${via === 'promote' ? STANDBY_B : ADDRESS_B} }`,
          '    stepTimeoutSeconds: 600',
          '',
        ].join('\n'),
      );
      return file;
    };
    standby = await buildStandby(standbyDir, standbyPort);
  }, 300_000);

  /** Runs the drill by the path given, with region B's repository and key alone; its report. */
  const drill = async (via: 'restore' | 'promote'): Promise<RecoveryDrillReport> => {
    events.length = 0;
    const reports = join(work.dir, `drills-${via}`);
    const r = await coffer(['--repo', repoB, 'drill', 'evacuate', '--policy', await policyFor(via), '--reports', reports, '--json'], { ...envB, COFFER_TEST_TSIG: bind.secret });
    if (r.status !== 0) throw new Error(`drill evacuate --via ${via}: exit ${r.status}\n${r.stdout}\n${r.stderr}`);
    expect((await readdir(reports)).length).toBe(3);
    return JSON.parse(r.stdout) as RecoveryDrillReport;
  };

  /** Put back: region A takes commits again, key A opens its repository, the name is on A. */
  const putBack = async () => {
    expect((await cluster.query<{ n: string }>('SELECT count(*) AS n FROM orders'))[0]!.n).toBe('1000');
    expect(await bind.addresses(NAME)).toEqual(['127.0.0.1']);
    expect((await cofferAsPostgres(['--repo', repoA, 'list'], envA)).status).toBe(0);
  };

  const say = (via: string, report: RecoveryDrillReport) =>
    console.log(`drill evacuate --via ${via}: RTO ${report.rto!.seconds.toFixed(1)} s (target 1800), RPO ${report.rpo!.seconds!.toFixed(2)} s, ${report.rpo!.commits} commits, ${report.rpo!.bytes} WAL bytes (target 900 s); ${report.phases.map((p) => `${p.name} ${p.seconds.toFixed(1)} s`).join(', ')}`);

  it('with no standby in region B: restored from bucket B with key B alone (key A disabled, region A killed), the name moved, writes taken within the targets; then all put back', async () => {
    const report = await drill('restore');
    expect(report).toMatchObject({ kind: 'evacuate', subject: 'main', ok: true, findings: [] });
    expect(report.phases.map((p) => p.name)).toEqual(['preflight', 'probe writer on region A', 'lose region A', 'restore in region B', 'start and recover', 'check what region B holds', 'cut over to region B', 'accept writes in region B', 'put back']);
    expect(report.checks.map((c) => [c.name, c.ok])).toEqual([
      ['probe rows', true],
      ['cutover name', true],
      ['writes accepted', true],
    ]);
    // Within the seeds' targets; what was lost is at most archive_timeout's worth and a little.
    expect(report.rto).toMatchObject({ met: true, target: 1800 });
    expect(report.rpo).toMatchObject({ met: true, target: 900 });
    expect(report.rpo!.seconds!).toBeLessThan(15);
    expect(events).toEqual(['/lose', '/restore']);
    expect(await readdir(join(work.dir, 'region-b'))).toEqual([]);
    await putBack();
    say('restore', report);
  }, 900_000);

  it("with region B's standby: promoted, the name moved, writes taken within the targets; then the standby rebuilt and all put back", async () => {
    const report = await drill('promote');
    expect(report).toMatchObject({ kind: 'evacuate', subject: 'main', ok: true, findings: [] });
    expect(report.phases.map((p) => p.name)).toEqual(['preflight', 'probe writer on region A', 'lose region A', 'promote region B', 'check what region B holds', 'cut over to region B', 'accept writes in region B', 'put back']);
    expect(report.rto).toMatchObject({ met: true });
    expect(report.rpo).toMatchObject({ met: true });
    // A standby streaming (or, reconnecting, fed by restore_command from bucket B) loses little.
    expect(report.rpo!.seconds!).toBeLessThan(15);
    say('promote', report);
    expect(events).toEqual(['/lose', '/restore', '/rebuild']);
    await putBack();
    // Region B's standby streams from region A again.
    await until(async () => (await cluster.query<{ n: string }>("SELECT count(*) AS n FROM pg_stat_replication WHERE application_name = 'region-b' AND state = 'streaming'"))[0]!.n === '1', 'region B to stream from region A again', 60_000, 200);
  }, 900_000);

  it('a drill that misses a target fails naming the finding (exit 32), reports coffer_drill_ok 0, and CofferDrillFailed fires on that series', async () => {
    const reports = join(work.dir, 'drills-missed');
    const textfile = join(work.dir, 'drill.prom');
    // An RPO target no archive_command-fed region can meet: what region B lacks spans more than 10 ms.
    const r = await coffer(['--repo', repoB, '--stanza', 'main', '--metrics-textfile', textfile, 'drill', 'evacuate', '--via', 'restore', '--policy', await policyFor('restore'), '--reports', reports, '--rpo-target', '0.01'], { ...envB, COFFER_TEST_TSIG: bind.secret });
    expect(r.status, r.stderr).toBe(32);
    expect(r.stdout).toMatch(/finding: RPO: region B lacks the last [\d.]+ s of region A's commits/);
    expect(r.stderr).toContain('evacuation drill');
    await putBack();
    const metrics = await readFile(textfile, 'utf8');
    const line = metrics.split('\n').find((l) => l.startsWith('coffer_drill_ok{'))!;
    expect(line).toMatch(/ 0$/);
    const series = line.slice(0, line.lastIndexOf(' '));
    // Empty labels are no labels to Prometheus.
    const labels = Object.fromEntries([...series.matchAll(/(\w+)="([^"]*)"/g)].filter((m) => m[2] !== '').map((m) => [m[1]!, m[2]!]));
    // The rule as deployed, evaluated by promtool over the very series this run wrote.
    const rules = fileURLToPath(new URL('../../deploy/prometheus/', import.meta.url));
    const unit = join(work.dir, 'drill-alert.test.yml');
    await writeFile(
      unit,
      [
        'rule_files:',
        `  - ${join(rules, 'coffer-alerts.yml')}`,
        'evaluation_interval: 1m',
        'tests:',
        '  - interval: 1m',
        '    input_series:',
        `      - series: '${series}'`,
        "        values: '0 0 0'",
        '    alert_rule_test:',
        '      - eval_time: 2m',
        '        alertname: CofferDrillFailed',
        '        exp_alerts:',
        `          - exp_labels: ${JSON.stringify({ severity: 'critical', ...labels })}`,
        `            exp_annotations: ${JSON.stringify({ runbook_url: 'runbooks/alerts.md#cofferdrillfailed', summary: `coffer ${labels.command} of ${labels.repository} ${labels.stanza} failed: a check failed or the RPO or RTO target was missed (its report names the finding)` })}`,
        '',
      ].join('\n'),
    );
    const promtool = spawnSync('promtool', ['test', 'rules', unit], { encoding: 'utf8' });
    if (promtool.error) throw new Error(`promtool is needed (Debian package prometheus): ${promtool.error.message}`);
    expect(promtool.status, `${promtool.stdout}${promtool.stderr}`).toBe(0);
  }, 900_000);
});

