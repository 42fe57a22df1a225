/**
 * A Prometheus server for tests: Debian's `prometheus`, started on a free
 * loopback port with a scrape config and rule files of the test's choosing,
 * evaluating every second; stopped and removed afterwards. A missing binary
 * fails loudly.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { copyFile, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { freePort } from '@coffer/verify';
import { until } from './until.js';

const BINARY = '/usr/bin/prometheus';

export interface PrometheusAlert {
  labels: Record<string, string>;
  annotations: Record<string, string>;
  state: 'pending' | 'firing';
}

export class PrometheusSandbox {
  private constructor(
    readonly url: string,
    private readonly dir: string,
    private readonly child: ChildProcess,
    private readonly log: () => string,
  ) {}

  /** Scrapes `targets` (host:port) every second as job `coffer`, with `ruleFiles` loaded. */
  static async start(targets: string[], ruleFiles: string[]): Promise<PrometheusSandbox> {
    if (!existsSync(BINARY)) throw new Error(`Prometheus is not installed (${BINARY}): install the Debian package prometheus (.ci/run does)`);
    const dir = await mkdtemp(join(tmpdir(), 'coffer-prometheus-'));
    for (const f of ruleFiles) await copyFile(f, join(dir, basename(f)));
    await writeFile(
      join(dir, 'prometheus.yml'),
      [
        'global:',
        '  scrape_interval: 1s',
        '  evaluation_interval: 1s',
        'rule_files:',
        ...ruleFiles.map((f) => `  - ${basename(f)}`),
        'scrape_configs:',
        '  - job_name: coffer',
        '    static_configs:',
        `      - targets: [${targets.map((t) => JSON.stringify(t)).join(', ')}]`,
        '',
      ].join('\n'),
    );
    const port = await freePort();
    let output = '';
    const child = spawn(BINARY, [`--config.file=${join(dir, 'prometheus.yml')}`, `--storage.tsdb.path=${join(dir, 'data')}`, `--web.listen-address=127.0.0.1:${port}`, '--web.console.templates=', '--web.console.libraries='], { stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout!.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (output += d.toString()));
    const p = new PrometheusSandbox(`http://127.0.0.1:${port}`, dir, child, () => output);
    try {
      await until(async () => (await fetch(`${p.url}/-/ready`).then((r) => r.ok).catch(() => false)) || child.exitCode !== null, 'Prometheus to be ready', 60_000, 200);
      if (child.exitCode !== null) throw new Error(`Prometheus exited with status ${child.exitCode}`);
    } catch (e) {
      await p.stop();
      throw new Error(`${(e as Error).message}\n${output.split('\n').slice(-15).join('\n')}`);
    }
    return p;
  }

  private async api<T>(path: string): Promise<T> {
    const res = await fetch(`${this.url}${path}`);
    const body = (await res.json()) as { status: string; data: T; error?: string };
    if (body.status !== 'success') throw new Error(`Prometheus ${path}: ${body.error ?? res.status}`);
    return body.data;
  }

  /** Alerts as Prometheus's own API lists them (pending and firing). */
  async alerts(): Promise<PrometheusAlert[]> {
    return (await this.api<{ alerts: PrometheusAlert[] }>('/api/v1/alerts')).alerts;
  }

  /** An instant query's result; an expression Prometheus refuses is an error naming it. */
  async query(expr: string): Promise<{ resultType: string; result: unknown[] }> {
    return this.api(`/api/v1/query?query=${encodeURIComponent(expr)}`);
  }

  /** Whether the scrape of every target works. */
  async targetsUp(): Promise<boolean> {
    const t = await this.api<{ activeTargets: { health: string }[] }>('/api/v1/targets');
    return t.activeTargets.length > 0 && t.activeTargets.every((x) => x.health === 'up');
  }

  logTail(): string {
    return this.log().split('\n').slice(-20).join('\n');
  }

  async stop(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) {
      const exited = new Promise((r) => this.child.once('exit', r));
      this.child.kill('SIGTERM');
      const t = setTimeout(() => this.child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(t);
    }
    await rm(this.dir, { recursive: true, force: true });
  }
}
