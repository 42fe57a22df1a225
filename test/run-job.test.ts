/**
 * `coffer run JOB --policy FILE`: one job of a policy, once, as cron or a
 * systemd timer runs it — the command line the policy makes, secrets from
 * the environment names it gives, the job's exit status, a metrics textfile
 * per step, an audit record in the repository. Repository jobs (mirror, gc)
 * need no PostgreSQL.
 */
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { coffer } from './support/cli.js';

const PASSPHRASE = 'run job passphrase';

describe('coffer run', () => {
  let dir: string;
  let policy: string;
  const env = { RUN_TEST_PASSPHRASE: PASSPHRASE };

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'coffer-run-job-'));
    const { mkdir } = await import('node:fs/promises');
    await mkdir(join(dir, 'data'));
    await writeFile(join(dir, 'data', 'file'), 'some data\n'.repeat(1000));
    const init = await coffer(['--repo', join(dir, 'primary'), 'init'], { COFFER_PASSPHRASE: PASSPHRASE });
    expect(init.status, init.stderr).toBe(0);
    const backup = await coffer(['--repo', join(dir, 'primary'), 'backup', '--path', join(dir, 'data')], { COFFER_PASSPHRASE: PASSPHRASE });
    expect(backup.status, backup.stderr).toBe(0);
    policy = join(dir, 'policy.yaml');
    await writeFile(
      policy,
      `version: 1
clusters: {}
repositories:
  primary:
    location: ${join(dir, 'primary')}
    keys: { passphrase: { env: RUN_TEST_PASSPHRASE } }
    mirrors: [copy1, copy2]
  copy1:
    location: ${join(dir, 'copy1')}
    keys: { passphrase: { env: RUN_TEST_PASSPHRASE } }
  copy2:
    location: ${join(dir, 'copy2')}
    keys: { passphrase: { env: RUN_TEST_PASSPHRASE } }
  missing:
    location: ${join(dir, 'nothing-here')}
    keys: { passphrase: { env: RUN_TEST_PASSPHRASE } }
schedules:
  - { job: mirror, repository: primary, cron: "*/15 * * * *" }
  - { job: gc, repository: primary, cron: "0 4 * * 0", attempts: 3 }
  - { job: gc, repository: missing, cron: "0 5 * * 0", attempts: 3 }
metrics: { textfile: ${join(dir, 'metrics', 'coffer.prom')} }
`,
    );
    await (await import('node:fs/promises')).mkdir(join(dir, 'metrics'));
  });
  afterAll(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('mirrors to every mirror the policy lists, one metrics file per destination, and the copies restore on their own', async () => {
    const r = await coffer(['run', 'mirror', '--policy', policy, '--json'], env);
    expect(r.status, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout) as { ok: boolean; steps: { step: string; exitStatus: number; figures: Record<string, number> }[] };
    expect(out.ok).toBe(true);
    expect(out.steps.map((s) => s.step)).toEqual(['mirror primary → copy1', 'mirror primary → copy2']);
    expect(out.steps.every((s) => (s.figures.mirror_copied_objects ?? 0) > 0)).toBe(true);
    expect((await readdir(join(dir, 'metrics'))).sort()).toEqual(['coffer-mirror-primary-copy1.prom', 'coffer-mirror-primary-copy2.prom']);
    const text = await readFile(join(dir, 'metrics', 'coffer-mirror-primary-copy2.prom'), 'utf8');
    expect(text).toContain(`coffer_job_success{command="mirror",repository="${join(dir, 'primary')}",stanza="",target="${join(dir, 'copy2')}"} 1`);
    for (const copy of ['copy1', 'copy2']) {
      const listed = await coffer(['--repo', join(dir, copy), 'list', '--json'], { COFFER_PASSPHRASE: PASSPHRASE });
      expect((JSON.parse(listed.stdout) as unknown[]).length).toBe(1);
    }
    // Each copy's audit trail holds the source's, and tells of the run that wrote it.
    for (const copy of ['copy1', 'copy2']) {
      const audit = JSON.parse((await coffer(['--repo', join(dir, copy), 'audit', '--json'], { COFFER_PASSPHRASE: PASSPHRASE })).stdout) as { ok: boolean; records: { command: string; details: Record<string, unknown> }[] };
      expect(audit.ok).toBe(true);
      expect(audit.records.map((x) => x.command)).toEqual(['init', 'backup', 'mirror']);
      expect(audit.records[2]!.details.to).toBe(join(dir, copy));
    }
  });

  it("exits with the job's status: a repository that is not there is not tried again", async () => {
    const r = await coffer(['run', 'gc', '--repository', 'missing', '--policy', policy], env);
    expect(r.status).toBe(4);
    expect(r.stderr).toContain('nothing-here');
    expect(r.stderr).not.toContain('try 2');
  });

  it('names a secret that is not there, never a value; refuses a job it cannot run', async () => {
    const r = await coffer(['run', 'gc', '--repository', 'primary', '--policy', policy], {});
    expect(r.status).toBe(3);
    expect(r.stderr).toContain('RUN_TEST_PASSPHRASE is not set');
    const wal = await coffer(['run', 'wal', '--policy', policy], env);
    expect(wal.status).toBe(3);
    expect(wal.stderr).toContain('runs under `coffer agent`');
    const ambiguous = await coffer(['run', 'gc', '--policy', policy], env);
    expect(ambiguous.status).toBe(3);
    expect(ambiguous.stderr).toContain('choose one with --repository');
    const ok = await coffer(['run', 'gc', '--repository', 'primary', '--policy', policy], env);
    expect(ok.status, ok.stderr).toBe(0);
  });
});
