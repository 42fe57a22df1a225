/**
 * What each job of a policy runs: the `coffer` arguments and environment.
 * Secrets (from the environment or a secret file) reach the child's
 * environment and never its arguments; a secret that is not there is a typed
 * error naming the variable or file and the policy key, never a value.
 */
import fc from 'fast-check';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { jobId, jobSteps, parsePolicy, retryable, walReceiveStep } from '@coffer/agent';
import { CofferError } from '@coffer/engine';

const policyText = (secretFile: string) => `version: 1
clusters:
  main:
    connection: host=/run/postgresql user=postgres dbname=postgres
    password: { env: PG_SECRET }
    pgdata: /var/lib/postgresql/15/main
    repository: primary
    maxRate: 200 MB
repositories:
  primary:
    location: s3://bucket-a/pg
    region: eu-west-1
    endpoint: https://s3.eu-west-1.example
    keys: { passphrase: { env: PASS } }
    credentials: { accessKeyId: { env: KEY_ID }, secretAccessKey: { file: ${secretFile} } }
    mirrors: [dr]
  dr:
    location: s3://bucket-b/pg
    region: us-east-1
    keys: { kms: { keyId: "arn:aws:kms:us-east-1:1:alias/dr" } }
    credentials: { accessKeyId: { env: DR_ID }, secretAccessKey: { env: DR_SECRET } }
schedules:
  - { job: backup, cluster: main, cron: "0 1 * * *" }
  - { job: expire, cluster: main, cron: "0 2 * * *" }
  - { job: verify, cluster: main, cron: "0 3 * * *" }
  - { job: mirror, repository: primary, cron: "0 4 * * *" }
  - { job: gc, repository: primary, cron: "0 5 * * 0" }
retention: { hotDays: 7, warmDays: 30, pitrWindowDays: 3 }
verification:
  smoke: [{ database: shop, sql: "SELECT count(*) FROM orders", expect: { min: 1 } }]
`;

const secretText = fc.string({ minLength: 8, maxLength: 40 }).filter((s) => s.trim().length >= 8 && !/[\n\r\0]/.test(s));

describe('jobSteps', () => {
  it('puts every secret in the environment and none in the arguments', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'coffer-steps-'));
    try {
      const file = join(dir, 'secret');
      const policy = parsePolicy(policyText(file), 'policy.yaml');
      await fc.assert(
        fc.asyncProperty(fc.uniqueArray(secretText, { minLength: 5, maxLength: 5 }), async ([pg, pass, key, fileSecret, dr]) => {
          await writeFile(file, `${fileSecret}\n`);
          const env = { PG_SECRET: pg!, PASS: pass!, KEY_ID: key!, DR_ID: 'dr-id', DR_SECRET: dr! };
          for (const spec of [{ job: 'backup', cluster: 'main' }, { job: 'expire', cluster: 'main' }, { job: 'verify', cluster: 'main' }, { job: 'mirror', repository: 'primary' }, { job: 'gc', repository: 'primary' }] as const) {
            for (const step of jobSteps(policy, spec, env)) {
              for (const secret of [pg, pass, key, fileSecret, dr]) expect(step.args.join('\u0000')).not.toContain(secret);
              if (spec.job !== 'mirror') expect(step.env.COFFER_PASSPHRASE).toBe(pass);
              expect(step.env.AWS_ACCESS_KEY_ID).toBe(key);
              // The file's trailing newline is not part of the secret.
              expect(step.env.AWS_SECRET_ACCESS_KEY).toBe(fileSecret);
              if (spec.job === 'backup') expect(step.env.PGPASSWORD).toBe(pg);
              if (spec.job === 'mirror') expect(step.env).toMatchObject({ COFFER_TO_AWS_ACCESS_KEY_ID: 'dr-id', COFFER_TO_AWS_SECRET_ACCESS_KEY: dr, COFFER_TO_AWS_REGION: 'us-east-1' });
            }
          }
        }),
        { numRuns: 30 },
      );
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('turns each job into the command a user would type', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'coffer-steps-'));
    await writeFile(join(dir, 'secret'), 'file-secret');
    const policy = parsePolicy(policyText(join(dir, 'secret')), 'policy.yaml');
    const env = { PG_SECRET: 'x', PASS: 'y', KEY_ID: 'z', DR_ID: 'a', DR_SECRET: 'b' };
    const [backup] = jobSteps(policy, { job: 'backup', cluster: 'main' }, { ...env });
    expect(backup!.args).toEqual(['--repo', 's3://bucket-a/pg', '--s3-endpoint', 'https://s3.eu-west-1.example', '--stanza', 'main', 'backup', '--json', '--db', 'host=/run/postgresql user=postgres dbname=postgres', '--pgdata', '/var/lib/postgresql/15/main', '--max-rate', '200MB']);
    expect(backup!.env.AWS_REGION).toBe('eu-west-1');
    const [expire] = jobSteps(policy, { job: 'expire', cluster: 'main' }, env);
    expect(expire!.args.slice(6)).toEqual(['expire', '--json', '--keep-hot', '7', '--keep-warm', '30', '--pitr-window', '3']);
    const [verify] = jobSteps(policy, { job: 'verify', cluster: 'main' }, env);
    expect(verify!.args).toContain('--smoke-query');
    expect(JSON.parse(verify!.args[verify!.args.indexOf('--smoke-query') + 1]!)).toEqual({ database: 'shop', sql: 'SELECT count(*) FROM orders', expect: { min: 1 } });
    expect(Number(verify!.args[verify!.args.indexOf('--pitr-window') + 1])).toBeCloseTo(3, 5);
    // From a standby: it is read, the primary is asked to switch segments; each with its own password, in the environment.
    const standby = parsePolicy(policyText(join(dir, 'secret')).replace('    maxRate: 200 MB\n', '    standby: { connection: "host=10.0.0.2 user=coffer dbname=postgres", password: { env: STANDBY_SECRET } }\n'), 'policy.yaml');
    const [fromStandby] = jobSteps(standby, { job: 'backup', cluster: 'main' }, { ...env, STANDBY_SECRET: 'standby-pw' });
    expect(fromStandby!.args.slice(6)).toEqual(['backup', '--json', '--db', 'host=10.0.0.2 user=coffer dbname=postgres', '--primary-db', 'host=/run/postgresql user=postgres dbname=postgres', '--pgdata', '/var/lib/postgresql/15/main']);
    expect(fromStandby!.env).toMatchObject({ PGPASSWORD: 'standby-pw', COFFER_PRIMARY_PGPASSWORD: 'x' });
    // The drill job: the newest backup restored and re-verified; or the nightly drill, the verification with the
    // policy's targets and reports directory.
    expect(jobSteps(policy, { job: 'drill', cluster: 'main' }, env)[0]!.args.slice(6)).toEqual(['drill', 'restore', 'latest', '--json']);
    const [nightly] = jobSteps(parsePolicy(`${policyText(join(dir, 'secret'))}drills: { reports: /srv/drills, rtoTargetSeconds: 600, projectBytes: 2 TB }\n`, 'policy.yaml'), { job: 'drill', cluster: 'main', drill: 'verify' }, env);
    const args = nightly!.args.slice(6);
    expect(args.slice(0, 3)).toEqual(['drill', 'verify', '--json']);
    expect(args).toContain('--smoke-query');
    expect(args.slice(args.indexOf('--reports'))).toEqual(['--reports', '/srv/drills', '--rto-target', '600', '--project-bytes', '2TB']);
    expect(jobId({ job: 'drill', cluster: 'main', drill: 'verify' })).toBe('drill-verify:main');
    // The weekly failover drill: through the policy file it was scheduled from, with the policy's targets.
    expect(() => jobSteps(policy, { job: 'drill', cluster: 'main', drill: 'failover' }, env)).toThrow(/policy file/);
    const [weekly] = jobSteps(parsePolicy(`${policyText(join(dir, 'secret'))}drills: { reports: /srv/drills, rpoTargetSeconds: 60, failover: { enabled: true } }\n`, 'policy.yaml'), { job: 'drill', cluster: 'main', drill: 'failover' }, env, '/etc/coffer/policy.yaml');
    expect(weekly!.args).toEqual(['drill', 'failover', '--json', '--policy', '/etc/coffer/policy.yaml', '--reports', '/srv/drills', '--rpo-target', '60']);
    expect(jobId({ job: 'drill', cluster: 'main', drill: 'failover' })).toBe('drill-failover:main');
    // The quarterly evacuation drill: region B's repository (its own keys and bucket), region A's cluster's stanza.
    const evacuate = parsePolicy(`${policyText(join(dir, 'secret'))}drills: { evacuate: { enabled: true, cluster: main, repository: dr, loseRegion: [/usr/local/bin/lose-region-a], restore: { dataDir: /srv/evacuate, listen: 10.1.0.5, port: 5432 } } }\n`, 'policy.yaml');
    const [quarterly] = jobSteps(evacuate, { job: 'drill', cluster: 'main', drill: 'evacuate' }, env, '/etc/coffer/policy.yaml');
    expect(quarterly!.args.slice(quarterly!.args.indexOf('drill'))).toEqual(['drill', 'evacuate', '--json', '--policy', '/etc/coffer/policy.yaml', '--reports', '/var/lib/coffer/drills']);
    expect(quarterly!.args.slice(0, 2)).toEqual(['--repo', 's3://bucket-b/pg']);
    expect(quarterly!.labels.repository).toBe('s3://bucket-b/pg');
    const mirrors = jobSteps(policy, { job: 'mirror', repository: 'primary' }, env);
    expect(mirrors.map((m) => m.labels.target)).toEqual(['s3://bucket-b/pg']);
    await rm(dir, { recursive: true, force: true });
  });

  it('a secret that is not there is a typed error naming where it should be, never a value', () => {
    const policy = parsePolicy(policyText('/nonexistent/secret-file'), 'policy.yaml');
    const env = { PG_SECRET: 'pg-value', KEY_ID: 'z', DR_ID: 'a', DR_SECRET: 'b' };
    const missingEnv = () => jobSteps(policy, { job: 'backup', cluster: 'main' }, env);
    expect(missingEnv).toThrow(CofferError);
    expect(missingEnv).toThrow(/repositories\.primary\.keys\.passphrase.*PASS is not set/);
    const missingFile = () => jobSteps(policy, { job: 'gc', repository: 'primary' }, { ...env, PASS: 'p' });
    expect(missingFile).toThrow(/repositories\.primary\.credentials\.secretAccessKey.*\/nonexistent\/secret-file: ENOENT/);
    expect(() => jobSteps(policy, { job: 'wal', cluster: 'main' }, env)).toThrow(/runs all the time/);
  });

  it('retries only what another try may cure', () => {
    for (const s of [1, 14, 18, 19, 22, 28, 29, 31]) expect(retryable(s), String(s)).toBe(true);
    for (const s of [0, 2, 3, 4, 6, 21, 32, 33, 34, 143]) expect(retryable(s), String(s)).toBe(false);
  });
});

describe('walReceiveStep', () => {
  const streaming = (mirrorCredentials: string) =>
    parsePolicy(
      `version: 1
clusters:
  main: { connection: host=/run/postgresql user=postgres, repository: primary }
repositories:
  primary:
    location: s3://bucket-a/pg
    region: eu-west-1
    keys: { kms: { keyId: "arn:aws:kms:eu-west-1:1:alias/a" } }
    mirrors: [dr, dr2]
  dr:
    location: s3://bucket-b/pg
    region: us-east-1
    endpoint: https://s3.us-east-1.example
    keys: { kms: { keyId: "arn:aws:kms:us-east-1:1:alias/dr" } }
    credentials: { accessKeyId: { env: DR_ID }, secretAccessKey: { env: DR_SECRET } }
  dr2:
    location: /srv/coffer-dr2
    keys: { passphrase: { env: PASS } }
${mirrorCredentials}
schedules:
  - { job: wal, cluster: main, stream: { mirrors: true } }
`,
      'policy.yaml',
    );

  it("streams to each mirror of the repository too, the mirror's region and endpoint in its URL and its credentials in the environment", () => {
    const step = walReceiveStep(streaming(''), 'main', { DR_ID: 'dr-key-id', DR_SECRET: 'dr-secret-value' });
    const mirrors = step.args.flatMap((a, i) => (step.args[i - 1] === '--wal-mirror' ? [a] : []));
    expect(mirrors).toEqual([`s3://bucket-b/pg?region=us-east-1&endpoint=${encodeURIComponent('https://s3.us-east-1.example')}`, '/srv/coffer-dr2']);
    expect(step.args.indexOf('--wal-mirror')).toBeLessThan(step.args.indexOf('wal-receive'));
    expect(step.env).toMatchObject({ COFFER_TO_AWS_ACCESS_KEY_ID: 'dr-key-id', COFFER_TO_AWS_SECRET_ACCESS_KEY: 'dr-secret-value' });
    expect(step.args.join(' ')).not.toContain('dr-secret-value');
  });

  it('refuses mirrors that name different credentials: one receiver has one set', () => {
    const policy = streaming('    credentials: { accessKeyId: { env: DR2_ID }, secretAccessKey: { env: DR2_SECRET } }');
    expect(() => walReceiveStep(policy, 'main', { DR_ID: 'a', DR_SECRET: 'b', DR2_ID: 'c', DR2_SECRET: 'd' })).toThrow(/mirrors dr and dr2 name different credentials/);
  });
});
