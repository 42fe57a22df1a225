/**
 * Metrics for one-shot runs and the alert rules on them: `--metrics-textfile`
 * writes a file Prometheus's own `promtool check metrics` accepts, with the
 * job's figures; a failed run says so and keeps the time of the last success;
 * and the rules in deploy/prometheus pass `promtool check rules` and their
 * unit tests (`promtool test rules`). promtool comes from Debian's
 * `prometheus` package (.ci/run installs it); without it these tests fail.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { coffer } from './support/cli.js';
import { scratch } from './support/tree.js';

const ROOT = fileURLToPath(new URL('../', import.meta.url));
const RULES = join(ROOT, 'deploy/prometheus');

function promtool(args: string[], input?: string): { status: number | null; out: string } {
  const r = spawnSync('promtool', args, { cwd: RULES, encoding: 'utf8', ...(input !== undefined ? { input } : {}) });
  if (r.error) throw new Error(`promtool is needed (Debian package prometheus; .ci/run installs it): ${r.error.message}`);
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
}

/** The value of `name` in metrics text (its only series). */
function value(text: string, name: string): number | undefined {
  const m = new RegExp(`^${name}\\{[^}]*\\} (\\S+)$`, 'm').exec(text);
  return m ? Number(m[1]) : undefined;
}

let work: { dir: string; cleanup: () => Promise<void> };
beforeAll(async () => {
  work = await scratch('coffer-metrics-');
});
afterAll(async () => work.cleanup());

describe('metrics and alert rules', () => {
  it('mirror --dry-run measures how far a mirror is behind: what it says is missing is what a mirror run copies; nothing is written', async () => {
    const env = { COFFER_PASSPHRASE: 'metrics passphrase' };
    const repo = join(work.dir, 'lag-repo');
    const dr = join(work.dir, 'lag-dr');
    const src = join(work.dir, 'lag-src');
    await mkdir(src);
    await writeFile(join(src, 'a'), 'y'.repeat(300_000));
    expect((await coffer(['--repo', repo, 'init'], env)).status).toBe(0);
    expect((await coffer(['--repo', repo, 'backup', '--path', src], env)).status).toBe(0);
    type Lag = { missingObjects: number; missingBytes: number; lagSeconds: number; oldestMissing?: string; missingByPrefix: Record<string, { objects: number }> };
    const lag = async (): Promise<Lag> => {
      const r = await coffer(['--repo', repo, 'mirror', '--to', dr, '--dry-run', '--json'], {});
      expect(r.status, r.stderr).toBe(0);
      return JSON.parse(r.stdout) as Lag;
    };
    // Nothing there yet: everything is missing, the config among it; the dry run needs no key and writes nothing.
    const first = await lag();
    expect(first.missingObjects).toBeGreaterThan(3);
    expect(first.missingByPrefix.config?.objects).toBe(1);
    expect(first.lagSeconds).toBeGreaterThanOrEqual(0);
    expect(Date.parse(first.oldestMissing!)).toBeLessThanOrEqual(Date.now());
    expect(await readdir(dr).catch(() => [])).toEqual([]);
    const copied = await coffer(['--repo', repo, 'mirror', '--to', dr, '--json'], env);
    expect(copied.status, copied.stderr).toBe(0);
    const report = JSON.parse(copied.stdout) as { copied: number; bytesCopied: number };
    // The mirror also writes its own audit record at the destination: not the source's, not counted as missing.
    expect(report.copied).toBe(first.missingObjects);
    expect(report.bytesCopied).toBe(first.missingBytes);
    expect(await lag()).toMatchObject({ missingObjects: 0, missingBytes: 0, lagSeconds: 0 });

    // A new backup at the source: behind again, by what it wrote; the figures reach the textfile.
    await writeFile(join(src, 'b'), 'z'.repeat(200_000));
    expect((await coffer(['--repo', repo, 'backup', '--path', src], env)).status).toBe(0);
    const file = join(work.dir, 'coffer_mirror_lag.prom');
    expect((await coffer(['--repo', repo, '--metrics-textfile', file, 'mirror', '--to', dr, '--dry-run'], {})).status).toBe(0);
    const text = await readFile(file, 'utf8');
    expect(promtool(['check', 'metrics'], text).status).toBe(0);
    expect(value(text, 'coffer_mirror_missing_objects')).toBeGreaterThan(0);
    expect(value(text, 'coffer_mirror_missing_bytes')).toBeGreaterThan(1000);
    expect(value(text, 'coffer_mirror_lag_seconds')).toBeGreaterThanOrEqual(0);
    expect(text).toContain(`target="${dr}"`);

    // With --backup it is refused; against another repository, named as a conflict.
    expect((await coffer(['--repo', repo, 'mirror', '--to', dr, '--dry-run', '--backup', 'latest'], {})).status).toBe(3);
    const other = join(work.dir, 'lag-other');
    expect((await coffer(['--repo', other, 'init'], env)).status).toBe(0);
    const conflict = await coffer(['--repo', repo, 'mirror', '--to', other, '--dry-run'], {});
    expect(conflict.status).toBe(12);
    expect(conflict.stderr).toMatch(/another repository/);
  });

  it('a run writes its metrics where --metrics-textfile says, in a form promtool accepts; a failed run keeps the last success', async () => {
    const env = { COFFER_PASSPHRASE: 'metrics passphrase' };
    const repo = join(work.dir, 'repo');
    const src = join(work.dir, 'src');
    await mkdir(src);
    await writeFile(join(src, 'a'), 'x'.repeat(100_000));
    expect((await coffer(['--repo', repo, 'init'], env)).status).toBe(0);
    const file = join(work.dir, 'coffer_backup.prom');
    const before = Date.now() / 1000;
    const ok = await coffer(['--repo', repo, '--metrics-textfile', file, 'backup', '--path', src], env);
    expect(ok.status).toBe(0);
    const text = await readFile(file, 'utf8');
    expect(promtool(['check', 'metrics'], text).status).toBe(0);
    expect(text).toContain(`coffer_job_success{command="backup",repository="${repo}",stanza="",target=""} 1`);
    expect(value(text, 'coffer_backup_bytes')).toBe(100_000);
    expect(value(text, 'coffer_backup_files')).toBe(1);
    expect(value(text, 'coffer_backup_damaged_pages')).toBe(0);
    const success = value(text, 'coffer_job_last_success_timestamp_seconds')!;
    expect(success).toBeGreaterThanOrEqual(before);

    // The environment variable names the file too; a run that fails says so and keeps when the last one succeeded.
    const failed = await coffer(['--repo', join(work.dir, 'absent'), 'backup', '--path', src], { ...env, COFFER_METRICS_TEXTFILE: file });
    expect(failed.status).toBe(4);
    const after = await readFile(file, 'utf8');
    expect(promtool(['check', 'metrics'], after).status).toBe(0);
    expect(value(after, 'coffer_job_success')).toBe(0);
    expect(value(after, 'coffer_job_exit_status')).toBe(4);
    expect(value(after, 'coffer_job_last_success_timestamp_seconds')).toBe(success);
    expect(value(after, 'coffer_backup_bytes')).toBeUndefined();

    // check reports its problems.
    const checked = join(work.dir, 'coffer_check.prom');
    expect((await coffer(['--repo', repo, '--metrics-textfile', checked, 'check'], env)).status).toBe(0);
    expect(value(await readFile(checked, 'utf8'), 'coffer_check_problems')).toBe(0);
  });

  it('the alert rules load, and their unit tests pass (promtool test rules)', () => {
    expect(promtool(['check', 'rules', 'coffer-alerts.yml'])).toMatchObject({ status: 0 });
    const r = promtool(['test', 'rules', 'coffer-alerts.test.yml']);
    expect(r.out).toContain('SUCCESS');
    expect(r.status).toBe(0);
    // Every rule has a test that makes it fire.
    const rules = [...readFileSync(join(RULES, 'coffer-alerts.yml'), 'utf8').matchAll(/- alert: (\w+)/g)].map((m) => m[1]);
    const tested = new Set([...readFileSync(join(RULES, 'coffer-alerts.test.yml'), 'utf8').matchAll(/alertname: (\w+)\n\s+exp_alerts:\n\s+- /g)].map((m) => m[1]));
    for (const rule of rules) expect(tested.has(rule), rule).toBe(true);
    // Every rule links to its section of runbooks/alerts.md, and the section is there.
    const text = readFileSync(join(RULES, 'coffer-alerts.yml'), 'utf8');
    const headings = new Set([...readFileSync(join(ROOT, 'runbooks/alerts.md'), 'utf8').matchAll(/^## (\w+)$/gm)].map((m) => m[1]!.toLowerCase()));
    for (const rule of rules) {
      expect(text, rule).toContain(`runbook_url: "runbooks/alerts.md#${rule!.toLowerCase()}"`);
      expect(headings.has(rule!.toLowerCase()), `runbooks/alerts.md has no section ${rule}`).toBe(true);
    }
  });
});

describe('the state of KMS wrapping keys', () => {
  it('coffer info reports each KMS key that wraps the data key, and counts those that no longer work (disabled, scheduled for deletion)', async () => {
    const { KmsTestServer } = await import('./support/kms-server.js');
    const { KMSClient, ScheduleKeyDeletionCommand } = await import('@aws-sdk/client-kms');
    const kms = await KmsTestServer.start();
    const dir = await scratch('coffer-kms-state-');
    try {
      const creds = { accessKeyId: kms.accessKeyId, secretAccessKey: kms.secretAccessKey };
      const client = new KMSClient({ region: 'us-east-1', endpoint: kms.endpoint, credentials: creds });
      const [a, b] = [await kms.createKey(), await kms.createKey()];
      const env = { AWS_ACCESS_KEY_ID: creds.accessKeyId, AWS_SECRET_ACCESS_KEY: creds.secretAccessKey, AWS_REGION: 'us-east-1', AWS_ENDPOINT_URL_KMS: kms.endpoint };
      const repo = join(dir.dir, 'repo');
      expect((await coffer(['--repo', repo, '--kms-key-id', a, 'init'], env)).status).toBe(0);
      expect((await coffer(['--repo', repo, '--kms-key-id', a, 'key', 'add', '--kms-key-id', b], env)).status).toBe(0);
      const look = async () => {
        const file = join(dir.dir, 'info.prom');
        const r = await coffer(['--repo', repo, '--kms-key-id', b, '--metrics-textfile', file, 'info', '--json'], env);
        expect(r.status, r.stderr).toBe(0);
        const text = await readFile(file, 'utf8');
        expect(promtool(['check', 'metrics'], text).status).toBe(0);
        return { keys: (JSON.parse(r.stdout) as { kmsKeys: { keyRef: string; state: string }[] }).kmsKeys, unusable: value(text, 'coffer_kms_keys_unusable') };
      };
      expect(await look()).toEqual({ keys: expect.arrayContaining([{ keyRef: a, state: 'enabled' }, { keyRef: b, state: 'enabled' }]), unusable: 0 });
      kms.setEnabled(a, false);
      expect(await look()).toEqual({ keys: expect.arrayContaining([{ keyRef: a, state: 'disabled' }, { keyRef: b, state: 'enabled' }]), unusable: 1 });
      await client.send(new ScheduleKeyDeletionCommand({ KeyId: a, PendingWindowInDays: 7 }));
      expect((await look()).keys).toEqual(expect.arrayContaining([{ keyRef: a, state: 'pending-deletion' }]));
      client.destroy();
    } finally {
      await kms.stop();
      await dir.cleanup();
    }
  });
});
