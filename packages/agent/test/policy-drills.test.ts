/**
 * The policy's drills and failover roles as a library user starts them:
 * targets and the reports directory from the caller, else the policy, else
 * the seeds'; a drill the policy does not enable is refused before anything
 * is opened (no decision log, no repository); names that are not the
 * policy's are refused naming the option.
 */
import { describe, expect, it } from 'vitest';
import { drillReportsDir, drillTargets, failoverNode, failoverSettings, ObserverRole, parsePolicy, policyEvacuateDrill, policyFailoverDrill } from '@coffer/agent';
import { InvalidArgumentError, type Repository } from '@coffer/engine';
import type { DecisionBackend } from '@coffer/failover';

const policyText = (drills: string) => `version: 1
clusters:
  main:
    connection: host=127.0.0.1 port=5432 user=postgres dbname=postgres
    pgdata: /var/lib/postgresql/15/main
    repository: primary
repositories:
  primary:
    location: /srv/coffer/primary
    keys: { keyFile: { file: /etc/coffer/key } }
  dr:
    location: /srv/coffer/dr
    keys: { keyFile: { file: /etc/coffer/key-b } }
schedules:
  - { job: backup, cluster: main, cron: "0 1 * * *" }
failover:
  cluster: shop
  decision: { location: /srv/coffer/decisions }
  nodes:
    - { name: db1, connection: "host=127.0.0.1 port=5432 user=postgres dbname=postgres", rejoin: [/bin/true] }
    - { name: db2, connection: "host=127.0.0.1 port=5433 user=postgres dbname=postgres" }
  observers: [a, b, c]
${drills}`;

const never = (what: string) => async (): Promise<never> => {
  throw new Error(`${what} was opened`);
};

async function refusal(p: Promise<unknown>): Promise<InvalidArgumentError> {
  const e = await p.then(
    () => undefined,
    (x: unknown) => x,
  );
  expect(e).toBeInstanceOf(InvalidArgumentError);
  return e as InvalidArgumentError;
}

describe('policy drills and failover roles', () => {
  it('targets and reports: the caller’s, else the policy’s, else the seeds’ (900 s, 1800 s, ./drills)', () => {
    const none = parsePolicy(policyText(''), 'p.yaml');
    expect(drillTargets(none)).toEqual({ rpoSeconds: 900, rtoSeconds: 1800 });
    expect(drillReportsDir(none)).toBe('drills');
    const set = parsePolicy(policyText('drills: { reports: /var/lib/coffer/drills, rpoTargetSeconds: 60, rtoTargetSeconds: 600 }'), 'p.yaml');
    expect(drillTargets(set)).toEqual({ rpoSeconds: 60, rtoSeconds: 600 });
    expect(drillTargets(set, { rtoTargetSeconds: 30 })).toEqual({ rpoSeconds: 60, rtoSeconds: 30 });
    expect(drillReportsDir(set)).toBe('/var/lib/coffer/drills');
    expect(drillReportsDir(set, 'here')).toBe('here');
  });

  it('a drill the policy does not enable is refused before the decision log or the repository is opened', async () => {
    for (const drills of ['', 'drills: { failover: { enabled: false } }']) {
      const policy = parsePolicy(policyText(drills), 'p.yaml');
      const e = await refusal(policyFailoverDrill(policy, { file: 'p.yaml', env: {}, decisions: never('the decision log') as () => Promise<DecisionBackend> }));
      expect(e.message).toContain('drills.failover.enabled');
      expect(e.message).toContain('p.yaml');
    }
    const policy = parsePolicy(policyText('drills: { evacuate: { enabled: false, cluster: main, repository: dr, loseRegion: [/bin/true], standby: { connection: "host=127.0.0.1 port=5434 user=postgres" } } }'), 'p.yaml');
    const e = await refusal(policyEvacuateDrill(policy, { file: 'p.yaml', env: {}, repo: never('the repository') as () => Promise<Repository>, restoreCommand: () => 'true' }));
    expect(e.message).toContain('drills.evacuate.enabled');
  });

  it('the failover drill is refused while a node cannot rejoin; an evacuation needs the settings of the way it takes', async () => {
    const policy = parsePolicy(policyText('drills: { failover: { enabled: true } }'), 'p.yaml');
    const e = await refusal(policyFailoverDrill(policy, { file: 'p.yaml', env: {}, decisions: never('the decision log') as () => Promise<DecisionBackend> }));
    expect(e.message).toContain('failover.nodes[].rejoin');
    expect(e.message).toContain('db2');
    const evacuate = (way: string) => parsePolicy(policyText(`drills: { evacuate: { enabled: true, cluster: main, repository: dr, loseRegion: [/bin/true], ${way} } }`), 'p.yaml');
    const byStandby = evacuate('standby: { connection: "host=127.0.0.1 port=5434 user=postgres" }');
    const r = await refusal(policyEvacuateDrill(byStandby, { file: 'p.yaml', env: {}, via: 'restore', repo: never('the repository') as () => Promise<Repository>, restoreCommand: () => 'true' }));
    expect(r.message).toContain('drills.evacuate.restore');
    const byRestore = evacuate('restore: { dataDir: /srv/pg, listen: 127.0.0.1, port: 5435 }');
    const p = await refusal(policyEvacuateDrill(byRestore, { file: 'p.yaml', env: {}, via: 'promote', repo: never('the repository') as () => Promise<Repository>, restoreCommand: () => 'true' }));
    expect(p.message).toContain('drills.evacuate.standby');
  });

  it('a node or observer the policy does not name is refused, naming the option', async () => {
    const settings = failoverSettings(parsePolicy(policyText(''), 'p.yaml'), {});
    expect(failoverNode(settings, 'db2', '--node').conninfo).toContain('port=5433');
    expect(() => failoverNode(settings, 'db3', '--node')).toThrow(/--node.*"db3" is not one of the policy's failover nodes \(db1, db2\)/s);
    const e = await refusal(ObserverRole.open(settings, {} as DecisionBackend, 'd', () => undefined));
    expect(e.message).toContain('--observer');
    expect(e.message).toContain('a, b, c');
  });
});
