/**
 * `coffer agent` streaming a cluster's WAL: a wal job with `stream` makes the
 * agent run `coffer wal-receive` and start it again whenever it ends. The
 * watch then measures the RPO from what the receiver reported durable (a
 * commit is in the repository within the flush interval, no segment switch
 * needed), leaves the receiver out of the standbys, and exports the slot's
 * retained WAL; a receiver killed is back, counted, and the alert it raised
 * while down is gone; SIGTERM stops it with the agent.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { COFFER_BIN, coffer } from '../support/cli.js';
import { Cluster, debianInstall, pgScratch } from '../support/pg.js';
import { until } from '../support/until.js';

const PASSPHRASE = 'agent stream passphrase';

interface Status {
  listen?: string;
  wal: { cluster: string; ok: boolean; lsn?: string; archivedThrough?: string; rpoSeconds?: number; replicas?: { name: string }[]; receiverSlot?: { name: string; exists: boolean; active: boolean; retainedBytes?: number; streamedThrough?: string } }[];
  receivers: { cluster: string; slot: string; up: boolean; pid?: number; restarts: number; lastExit?: string }[];
  alerts: { name: string; about: string }[];
}

function sample(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const line of text.split('\n')) {
    if (!line.startsWith(name + '{') && !line.startsWith(name + ' ')) continue;
    if (Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`))) return Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return undefined;
}

const lsnValue = (lsn: string) => {
  const [hi, lo] = lsn.split('/');
  return (BigInt(`0x${hi}`) << 32n) | BigInt(`0x${lo}`);
};

describe('coffer agent streams WAL with coffer wal-receive', () => {
  let work: { dir: string; cleanup: () => Promise<void> };
  let cluster: Cluster;
  let policyFile: string;
  let agent: { child: ChildProcess; lines: string[]; exited: Promise<number | null> } | undefined;

  beforeAll(async () => {
    work = await pgScratch('coffer-agent-stream-');
    const repo = join(work.dir, 'repo');
    expect((await coffer(['--repo', repo, 'init'], { COFFER_PASSPHRASE: PASSPHRASE })).status).toBe(0);
    cluster = await Cluster.create(debianInstall(), work.dir);
    await cluster.start();
    await cluster.query('CREATE TABLE t (id serial PRIMARY KEY, pad text)');
    policyFile = join(work.dir, 'policy.yaml');
    await writeFile(
      policyFile,
      `version: 1
clusters:
  main:
    connection: host=127.0.0.1 port=${cluster.port} user=postgres dbname=postgres
    repository: local
repositories:
  local:
    location: ${repo}
    keys: { passphrase: { env: STREAM_TEST_PASSPHRASE } }
schedules:
  - { job: wal, cluster: main, stream: { flushIntervalSeconds: 0.5 } }
agent: { stateDir: ${join(work.dir, 'state')}, walPollSeconds: 1, repositoryLookSeconds: 3600 }
metrics: { listen: "127.0.0.1:0" }
logs: { format: json, level: info }
`,
    );
  }, 120_000);
  afterAll(async () => {
    agent?.child.kill('SIGKILL');
    await cluster?.stop().catch(() => undefined);
    await work?.cleanup();
  });

  const status = async (): Promise<Status> => {
    const r = await coffer(['status', '--json', '--policy', policyFile]);
    if (r.status !== 0) throw new Error(`coffer status exited ${r.status}: ${r.stderr}`);
    return JSON.parse(r.stdout) as Status;
  };
  const metrics = async (listen: string) => (await fetch(`http://${listen}/metrics`)).text();

  it('runs the receiver, measures the RPO from its flushes, restarts it when killed, and stops it on SIGTERM', async () => {
    const child = spawn(process.execPath, [COFFER_BIN, 'agent', '--policy', policyFile], {
      env: { PATH: process.env.PATH, HOME: process.env.HOME, STREAM_TEST_PASSPHRASE: PASSPHRASE },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const lines: string[] = [];
    child.stdout!.on('data', (d: Buffer) => lines.push(...d.toString().split('\n').filter(Boolean)));
    child.stderr!.on('data', (d: Buffer) => lines.push(`STDERR ${d.toString()}`));
    agent = { child, lines, exited: new Promise((resolve) => child.on('close', (code) => resolve(code))) };
    const log = () => lines.slice(-30).join('\n');

    let s = await (async () => {
      let last: Status | undefined;
      await until(async () => {
        last = await status().catch(() => undefined);
        return last?.receivers[0]?.up === true && last.listen !== undefined;
      }, 'the receiver to stream', 60_000, 200).catch((e: Error) => {
        throw new Error(`${e.message}\n${log()}`);
      });
      return last!;
    })();
    const listen = s.listen!;
    expect(sample(await metrics(listen), 'coffer_wal_receiver_up', { cluster: 'main', slot: 'coffer' })).toBe(1);

    // A commit, no segment switch: durable in the repository within the flush interval, and the RPO says so.
    await cluster.query("INSERT INTO t (pad) VALUES ('streamed')");
    const [{ lsn }] = (await cluster.query<{ lsn: string }>('SELECT pg_current_wal_lsn()::text AS lsn')) as [{ lsn: string }];
    await until(
      async () => {
        s = await status();
        const w = s.wal[0];
        return !!w?.receiverSlot?.streamedThrough && lsnValue(w.receiverSlot.streamedThrough) >= lsnValue(lsn) && w.rpoSeconds === 0;
      },
      'the watch to see the commit streamed (RPO 0)',
      30_000,
      200,
    );
    const w = s.wal[0]!;
    expect(lsnValue(w.archivedThrough!)).toBeGreaterThanOrEqual(lsnValue(lsn));
    expect(w.receiverSlot).toMatchObject({ name: 'coffer', exists: true, active: true });
    // The receiver is no standby: it replays nothing, and must not pass for one.
    expect((w.replicas ?? []).map((r) => r.name)).not.toContain('coffer');
    const text = await metrics(listen);
    expect(sample(text, 'coffer_wal_slot_retained_bytes', { cluster: 'main', slot: 'coffer' })).toBeGreaterThanOrEqual(0);
    expect(sample(text, 'coffer_wal_slot_lost', { cluster: 'main', slot: 'coffer' })).toBe(0);
    expect(s.alerts.map((a) => a.name)).not.toContain('CofferWalReceiverDown');

    // Killed: the agent starts it again and counts it.
    const pid = s.receivers[0]!.pid!;
    process.kill(pid, 'SIGKILL');
    await until(async () => (s = await status()).receivers[0]!.restarts === 1 && s.receivers[0]!.up && s.receivers[0]!.pid !== pid, 'the receiver to be started again', 30_000, 200).catch((e: Error) => {
      throw new Error(`${e.message}\n${log()}`);
    });
    expect(s.receivers[0]!.lastExit).toBe('signal SIGKILL');
    const after = await metrics(listen);
    expect(sample(after, 'coffer_wal_receiver_restarts_total', { cluster: 'main', slot: 'coffer' })).toBe(1);
    expect(sample(after, 'coffer_wal_receiver_up', { cluster: 'main', slot: 'coffer' })).toBe(1);
    expect(lines.some((l) => l.includes('WAL receiver ended; starting it again'))).toBe(true);

    // SIGTERM: the agent stops its receiver and ends.
    const running = s.receivers[0]!.pid!;
    child.kill('SIGTERM');
    expect(await agent.exited).toBe(0);
    expect(() => process.kill(running, 0)).toThrow();
    agent = undefined;
  }, 180_000);
});
