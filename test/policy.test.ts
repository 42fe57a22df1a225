/**
 * The policy file: the documented example validates and says when each job
 * runs next; the published JSON Schema is the one the code generates; a
 * policy with mistakes is refused with every problem at its line, column and
 * key (a secret written inline among them, never echoed). Mangled YAML is
 * the reliability suite's (test/chaos/fuzz-policy.test.ts).
 */
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parsePolicy, PolicyError } from '@coffer/agent';
import { EXIT_CODES } from '@coffer/cli';
import { coffer } from './support/cli.js';
import { scratch } from './support/tree.js';

const ROOT = fileURLToPath(new URL('../', import.meta.url));
const EXAMPLE = join(ROOT, 'config/backup-policy.yaml');

let work: { dir: string; cleanup: () => Promise<void> };
beforeAll(async () => {
  work = await scratch('coffer-policy-');
});
afterAll(async () => {
  await work.cleanup();
});

/** The problems (line:column path) a policy text is refused with; the secret in it appears in none of the messages. */
function refusal(text: string, secret: string): string[] {
  let err: unknown;
  try {
    parsePolicy(text, 'p.yaml');
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(PolicyError);
  expect((err as PolicyError).message).not.toContain(secret);
  return (err as PolicyError).problems.map((p) => `${p.line}:${p.column} ${p.path}`);
}

/** A policy with a failover section: `before` lines after its decision, db1's replication connection, `after` lines after its observers. */
function failoverPolicy(before: string[], replication?: string, after: string[] = []): string {
  return [
    'version: 1',
    'clusters: {}',
    'repositories: {}',
    'schedules: []',
    'failover:',
    '  cluster: main',
    '  decision: { location: /d }',
    ...before,
    '  nodes:',
    `    - { name: db1, connection: "host=db1"${replication ? `, replication: ${replication}` : ''} }`,
    '    - { name: db2, connection: "host=db2" }',
    '  observers: [a, b, c]',
    ...after,
    '',
  ].join('\n');
}

describe('policy file', () => {
  it('the example policy is valid, and check says when each scheduled job runs next', async () => {
    const r = await coffer(['policy', 'check', '--policy', EXAMPLE, '--json']);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const out = JSON.parse(r.stdout) as { policy: { clusters: Record<string, unknown> }; nextRuns: { job: string; about: string; next: string; timeZone: string }[] };
    expect(Object.keys(out.policy.clusters)).toEqual(['main']);
    expect(out.nextRuns.map((n) => `${n.job} ${n.about}`)).toEqual(['backup main', 'mirror primary', 'expire main', 'gc primary', 'drill verify main']);
    const backup = out.nextRuns[0]!;
    // 01:00 in Paris is 00:00 or 23:00 UTC, depending on the season.
    expect(new Date(backup.next).getUTCMinutes()).toBe(0);
    expect([0, 23]).toContain(new Date(backup.next).getUTCHours());
    expect(Date.parse(backup.next)).toBeGreaterThan(Date.now());
    // COFFER_POLICY names the file too.
    expect((await coffer(['policy', 'check'], { COFFER_POLICY: EXAMPLE })).status).toBe(0);
  });

  it('the JSON Schema published for editors is the one the code generates', async () => {
    const r = await coffer(['policy', 'schema']);
    expect(r.status).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual(JSON.parse(await readFile(join(ROOT, 'config/backup-policy.schema.json'), 'utf8')));
  });

  it('a policy with mistakes is refused (exit 34), each problem at its line, column and key; the secret is not echoed', async () => {
    const file = join(work.dir, 'bad.yaml');
    await writeFile(
      file,
      [
        'version: 1',
        'clusters:',
        '  main:',
        '    conection: host=/tmp',
        '    repository: primry',
        'repositories:',
        '  primary:',
        '    location: /var/backups/coffer',
        '    keys:',
        '      passphrase: hunter2-do-not-print',
        'schedules:',
        '  - { job: backup, cluster: main, cron: "61 * * * *" }',
        '  - { job: verify, cluster: other, cron: "@daily", timeZone: Mars/Olympus }',
        '  - { job: gc }',
        '  - { job: backup, cluster: main, cron: "@daily", drill: verify }',
        '  - { job: drill, cron: "@weekly", drill: failover }',
        '',
      ].join('\n'),
    );
    const r = await coffer(['policy', 'check', '--policy', file]);
    expect(r.status).toBe(EXIT_CODES.COFFER_INVALID_POLICY);
    expect(r.stderr).not.toContain('hunter2');
    const lines = r.stderr.split('\n').filter((l) => l.startsWith(`  ${file}:`)).map((l) => l.slice(file.length + 3));
    expect(lines).toEqual([
      '4:5: clusters.main.connection: missing (expected string)',
      '4:5: clusters.main.conection: unknown key (did you mean "connection"?)',
      '5:17: clusters.main.repository: no repository named "primry" under repositories',
      '10:19: repositories.primary.keys.passphrase: a secret is never written in the policy: name an environment variable ({ env: NAME }) or a secret file ({ file: /path })',
      '12:41: schedules.0.cron: expected a cron expression: five fields (minute hour day-of-month month day-of-week), six with seconds first, or @hourly, @daily, @weekly…',
      '13:29: schedules.1.cluster: no cluster named "other" under clusters',
      '13:62: schedules.1.timeZone: expected an IANA time zone such as UTC or Europe/Paris',
      '14:5: schedules.2: a gc job names the repository it is about (repository: NAME)',
      '14:5: schedules.2: a gc job runs on a schedule: give its cron expression (cron: "…")',
      '15:58: schedules.3.drill: only a drill job has a drill kind (restore, verify or failover)',
      '16:43: schedules.4.drill: the failover drill needs a failover section',
      '16:43: schedules.4.drill: the failover drill moves the primary twice: it runs only with drills.failover.enabled: true',
    ]);
    const missing = await coffer(['policy', 'check', '--policy', join(work.dir, 'absent.yaml')]);
    expect(missing.status).toBe(EXIT_CODES.COFFER_INVALID_POLICY);
    expect(missing.stderr).toContain('absent.yaml:0:0: cannot read it: ENOENT');
  });

  it('a password in a connection string is refused like any inline secret', () => {
    const text = `version: 1\nclusters:\n  c: { connection: "host=db password=pw-xyz", repository: r }\nrepositories:\n  r: { location: /b, keys: { passphrase: { env: P } } }\nschedules: []\n`;
    expect(refusal(text, 'pw-xyz')).toEqual(['3:20 clusters.c.connection']);
  });

  it("failover: a password in a node's replication connection and a backup of a cluster the policy lacks are refused", () => {
    const text = failoverPolicy(['  backupAfterPromotion: shop'], '"host=db1 user=rep password=pw-abc"');
    expect(refusal(text, 'pw-abc')).toEqual(['8:25 failover.backupAfterPromotion', '10:57 failover.nodes.0.replication']);
  });

  it('failover: failsafe needs an endpoint (host:port) for every observer and for no one else; its token only by reference', () => {
    const text = failoverPolicy([], undefined, ['  failsafe:', '    endpoints: { a: "10.0.0.1:7410", b: "10.0.0.2", d: "10.0.0.4:7410" }', '    token: tok-secret-123']);
    expect(refusal(text, 'tok-secret-123')).toEqual(['13:16 failover.failsafe.endpoints', '13:41 failover.failsafe.endpoints.b', '13:56 failover.failsafe.endpoints.d', '14:12 failover.failsafe.token']);
  });

  it('an alias bomb is refused, not expanded', () => {
    const levels = ['a0: &a0 [x, x, x, x, x, x, x, x, x, x]'];
    for (let i = 1; i < 9; i++) levels.push(`a${i}: &a${i} [${Array.from({ length: 10 }, () => `*a${i - 1}`).join(', ')}]`);
    expect(() => parsePolicy(levels.join('\n') + '\n', 'bomb.yaml')).toThrow(PolicyError);
  });
});
