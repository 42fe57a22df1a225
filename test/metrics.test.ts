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
import { mkdir, readFile, writeFile } from 'node:fs/promises';
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
  });
});

describe('the state of KMS wrapping keys', () => {
  it('coffer info reports each KMS key that wraps the data key, and counts those that no longer work (disabled, scheduled for deletion)', async () => {
    const { KmsTestServer } = await import('./support/kms-server.js');
    const { CreateKeyCommand, KMSClient, ScheduleKeyDeletionCommand } = await import('@aws-sdk/client-kms');
    const kms = await KmsTestServer.start();
    const dir = await scratch('coffer-kms-state-');
    try {
      const creds = { accessKeyId: kms.accessKeyId, secretAccessKey: kms.secretAccessKey };
      const client = new KMSClient({ region: 'us-east-1', endpoint: kms.endpoint, credentials: creds });
      const [a, b] = [(await client.send(new CreateKeyCommand({}))).KeyMetadata!.Arn!, (await client.send(new CreateKeyCommand({}))).KeyMetadata!.Arn!];
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
