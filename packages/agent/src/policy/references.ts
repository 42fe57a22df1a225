/**
 * What the schema cannot say: names used must be defined, and each job must
 * name what it is about. Checked on the parsed YAML as it is, whether or not
 * the rest validated, so one run of `policy check` reports every problem.
 */
export interface ReferenceProblem {
  path: (string | number)[];
  message: string;
}

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);

export function referenceProblems(value: unknown): ReferenceProblem[] {
  if (!isObj(value)) return [];
  const out: ReferenceProblem[] = [];
  const clusters = isObj(value.clusters) ? value.clusters : {};
  const repositories = isObj(value.repositories) ? value.repositories : {};
  const repo = (n: unknown, path: (string | number)[]) => {
    if (typeof n === 'string' && !(n in repositories)) out.push({ path, message: `no repository named ${JSON.stringify(n)} under repositories` });
  };
  for (const [c, cluster] of Object.entries(clusters)) if (isObj(cluster)) repo(cluster.repository, ['clusters', c, 'repository']);
  for (const [r, repository] of Object.entries(repositories)) {
    if (!isObj(repository) || !Array.isArray(repository.mirrors)) continue;
    repository.mirrors.forEach((m, i) => {
      repo(m, ['repositories', r, 'mirrors', i]);
      if (m === r) out.push({ path: ['repositories', r, 'mirrors', i], message: 'a repository cannot mirror to itself' });
    });
  }
  if (isObj(value.failover)) {
    const f = value.failover;
    const nodes = Array.isArray(f.nodes) ? f.nodes.map((n) => (isObj(n) ? n.name : undefined)) : [];
    nodes.forEach((n, i) => {
      if (typeof n === 'string' && nodes.indexOf(n) !== i) out.push({ path: ['failover', 'nodes', i, 'name'], message: `node ${JSON.stringify(n)} is listed twice` });
    });
    const observers = Array.isArray(f.observers) ? f.observers : [];
    observers.forEach((o, i) => {
      if (observers.indexOf(o) !== i) out.push({ path: ['failover', 'observers', i], message: `observer ${JSON.stringify(o)} is listed twice` });
    });
    if (typeof f.replayFrom === 'string' && !(f.replayFrom in clusters)) out.push({ path: ['failover', 'replayFrom'], message: `no cluster named ${JSON.stringify(f.replayFrom)} under clusters` });
    if (typeof f.backupAfterPromotion === 'string' && !(f.backupAfterPromotion in clusters)) out.push({ path: ['failover', 'backupAfterPromotion'], message: `no cluster named ${JSON.stringify(f.backupAfterPromotion)} under clusters` });
    const endpoints = isObj(f.failsafe) && isObj(f.failsafe.endpoints) ? f.failsafe.endpoints : undefined;
    if (endpoints) {
      for (const o of observers) if (typeof o === 'string' && !(o in endpoints)) out.push({ path: ['failover', 'failsafe', 'endpoints'], message: `observer ${JSON.stringify(o)} has no endpoint (host:port): every observer needs one` });
      for (const o of Object.keys(endpoints)) if (!observers.includes(o)) out.push({ path: ['failover', 'failsafe', 'endpoints', o], message: `${JSON.stringify(o)} is not one of failover.observers` });
    }
    if (observers.length === 2) out.push({ path: ['failover', 'observers'], message: 'two observers make no majority when one is cut off from the other: add a witness (three, or any odd number)' });
  }
  const evacuate = isObj(value.drills) && isObj(value.drills.evacuate) ? value.drills.evacuate : undefined;
  if (evacuate) {
    if (typeof evacuate.cluster === 'string' && !(evacuate.cluster in clusters)) out.push({ path: ['drills', 'evacuate', 'cluster'], message: `no cluster named ${JSON.stringify(evacuate.cluster)} under clusters` });
    repo(evacuate.repository, ['drills', 'evacuate', 'repository']);
    if (evacuate.standby === undefined && evacuate.restore === undefined) out.push({ path: ['drills', 'evacuate'], message: 'region B needs a standby to promote or a restore (dataDir, listen, port): give one of them' });
    if (evacuate.dns !== undefined && evacuate.addresses === undefined) out.push({ path: ['drills', 'evacuate', 'addresses'], message: 'the DNS cutover needs region A\'s and region B\'s addresses (addresses: { a, b })' });
  }
  if (!Array.isArray(value.schedules)) return out;
  value.schedules.forEach((s: unknown, i) => {
    if (!isObj(s) || typeof s.job !== 'string') return;
    const needsCluster = s.job !== 'mirror' && s.job !== 'gc';
    // The failover drill is about the failover section's cluster, which need not be one Coffer backs up.
    if (needsCluster && s.cluster === undefined && !(s.job === 'drill' && (s.drill === 'failover' || s.drill === 'evacuate'))) out.push({ path: ['schedules', i], message: `a ${s.job} job names the cluster it is about (cluster: NAME)` });
    if (!needsCluster && s.repository === undefined) out.push({ path: ['schedules', i], message: `a ${s.job} job names the repository it is about (repository: NAME)` });
    if (typeof s.cluster === 'string' && !(s.cluster in clusters)) out.push({ path: ['schedules', i, 'cluster'], message: `no cluster named ${JSON.stringify(s.cluster)} under clusters` });
    repo(s.repository, ['schedules', i, 'repository']);
    const source = typeof s.repository === 'string' ? repositories[s.repository] : undefined;
    if (s.job === 'mirror' && isObj(source) && !(Array.isArray(source.mirrors) && source.mirrors.length > 0)) {
      out.push({ path: ['schedules', i, 'repository'], message: `repository ${JSON.stringify(s.repository)} lists no mirrors` });
    }
    if (s.job !== 'wal' && s.cron === undefined) out.push({ path: ['schedules', i], message: `a ${s.job} job runs on a schedule: give its cron expression (cron: "…")` });
    if (s.job === 'wal' && s.cron !== undefined) out.push({ path: ['schedules', i, 'cron'], message: 'the wal job runs all the time (the archiver or the receiver), not on a schedule' });
    if (s.job !== 'wal' && s.stream !== undefined) out.push({ path: ['schedules', i, 'stream'], message: 'only the wal job streams WAL' });
    if (s.job !== 'drill' && s.drill !== undefined) out.push({ path: ['schedules', i, 'drill'], message: 'only a drill job has a drill kind (restore, verify or failover)' });
    if (s.job === 'drill' && s.drill === 'failover') {
      const f = isObj(value.failover) ? value.failover : undefined;
      const d = isObj(value.drills) && isObj(value.drills.failover) ? value.drills.failover : undefined;
      if (!f) out.push({ path: ['schedules', i, 'drill'], message: 'the failover drill needs a failover section' });
      else if (typeof s.cluster === 'string' && s.cluster !== f.cluster) out.push({ path: ['schedules', i, 'cluster'], message: `the failover drill is about the failover section's cluster (${JSON.stringify(f.cluster)}): leave cluster out` });
      if (d?.enabled !== true) out.push({ path: ['schedules', i, 'drill'], message: 'the failover drill moves the primary twice: it runs only with drills.failover.enabled: true' });
    }
    if (s.job === 'drill' && s.drill === 'evacuate') {
      const d = isObj(value.drills) && isObj(value.drills.evacuate) ? value.drills.evacuate : undefined;
      if (d?.enabled !== true) out.push({ path: ['schedules', i, 'drill'], message: 'the evacuation drill takes region A away: it runs only with drills.evacuate.enabled: true' });
    }
  });
  return out;
}
