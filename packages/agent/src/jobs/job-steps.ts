/**
 * What a job of the policy runs: the `coffer` command lines (arguments and
 * environment) of its steps. A backup, expire, verify, drill or gc is one
 * step; a mirror is one step per destination. Secrets are read when the job
 * runs — a rotated secret file is picked up by the next run — and go into the
 * child's environment, never its arguments (which `ps` shows to every user).
 */
import { readFileSync } from 'node:fs';
import { InvalidArgumentError, pitrCutoff } from '@coffer/engine';
import type { ClusterPolicy, Job, Policy, RepositoryPolicy, SecretRef } from '../policy/schema.js';

/** A job and what it is about: a cluster (backup, wal, expire, verify, drill) or a repository (mirror, gc). */
export interface JobSpec {
  job: Job;
  cluster?: string;
  repository?: string;
  /** A drill job's kind (default `restore`). */
  drill?: 'restore' | 'verify' | 'failover' | 'evacuate';
}

/** The labels a step's metrics carry (never a secret: locations and names only). */
export interface StepLabels {
  /** The job, or `info` for the agent's look at a repository after one. */
  command: Job | 'info';
  /** The repository's location. */
  repository: string;
  stanza: string;
  /** A mirror's destination location ('' for other jobs). */
  target: string;
}

export interface JobStep {
  /** e.g. `backup main`, `mirror primary → dr`. */
  name: string;
  /** Arguments of `coffer`. */
  args: string[];
  /** Environment the step adds to the agent's own. */
  env: Record<string, string>;
  labels: StepLabels;
}

/** `backup:main`, `gc:primary`, `drill-verify:main`, `drill-failover:main`: one name per job of a policy. */
export function jobId(spec: JobSpec): string {
  return `${spec.job}${spec.drill !== undefined && spec.drill !== 'restore' ? `-${spec.drill}` : ''}:${spec.cluster ?? spec.repository ?? ''}`;
}

/** Reads a secret the policy names; `where` is its key in the policy, for the message (which never holds the value). */
export function readSecret(ref: SecretRef, where: string, env: NodeJS.ProcessEnv): string {
  if ('env' in ref) {
    const value = env[ref.env];
    if (value === undefined || value === '') throw new InvalidArgumentError(where, `the environment variable ${ref.env} is not set`);
    return value;
  }
  let text: string;
  try {
    text = readFileSync(ref.file, 'utf8');
  } catch (e) {
    throw new InvalidArgumentError(where, `cannot read the secret file ${ref.file}: ${(e as NodeJS.ErrnoException).code ?? 'unreadable'}`);
  }
  // Files written with `echo` end with a newline that is not part of the secret.
  const value = text.replace(/\r?\n$/, '');
  if (value === '') throw new InvalidArgumentError(where, `the secret file ${ref.file} is empty`);
  return value;
}

/** The source repository's arguments and environment (its keys, endpoint, region and credentials). */
function repositoryAccess(name: string, r: RepositoryPolicy, env: NodeJS.ProcessEnv): { args: string[]; env: Record<string, string> } {
  const at = `repositories.${name}`;
  const args = ['--repo', r.location, ...(r.endpoint ? ['--s3-endpoint', r.endpoint] : [])];
  const out: Record<string, string> = {};
  if (r.region) out.AWS_REGION = r.region;
  const keys = r.keys;
  if ('kms' in keys) {
    args.push('--kms-key-id', keys.kms.keyId);
    if (keys.kms.endpoint) out.AWS_ENDPOINT_URL_KMS = keys.kms.endpoint;
    if (keys.kms.region && !r.region) out.AWS_REGION = keys.kms.region;
  } else if ('keyFile' in keys) {
    args.push('--key-file', 'file' in keys.keyFile ? keys.keyFile.file : readSecret(keys.keyFile, `${at}.keys.keyFile`, env));
  } else {
    out.COFFER_PASSPHRASE = readSecret(keys.passphrase, `${at}.keys.passphrase`, env);
  }
  if (r.credentials) {
    out.AWS_ACCESS_KEY_ID = readSecret(r.credentials.accessKeyId, `${at}.credentials.accessKeyId`, env);
    out.AWS_SECRET_ACCESS_KEY = readSecret(r.credentials.secretAccessKey, `${at}.credentials.secretAccessKey`, env);
    if (r.credentials.sessionToken) out.AWS_SESSION_TOKEN = readSecret(r.credentials.sessionToken, `${at}.credentials.sessionToken`, env);
  }
  return { args, env: out };
}

/** A mirror destination's arguments and environment (`coffer mirror --to`, credentials in COFFER_TO_AWS_*). */
function destinationAccess(name: string, r: RepositoryPolicy, env: NodeJS.ProcessEnv): { args: string[]; env: Record<string, string> } {
  const at = `repositories.${name}`;
  const out: Record<string, string> = {};
  if (r.region) out.COFFER_TO_AWS_REGION = r.region;
  if (r.credentials) {
    out.COFFER_TO_AWS_ACCESS_KEY_ID = readSecret(r.credentials.accessKeyId, `${at}.credentials.accessKeyId`, env);
    out.COFFER_TO_AWS_SECRET_ACCESS_KEY = readSecret(r.credentials.secretAccessKey, `${at}.credentials.secretAccessKey`, env);
    if (r.credentials.sessionToken) out.COFFER_TO_AWS_SESSION_TOKEN = readSecret(r.credentials.sessionToken, `${at}.credentials.sessionToken`, env);
  }
  return { args: ['--to', r.location, ...(r.endpoint ? ['--to-s3-endpoint', r.endpoint] : [])], env: out };
}

function clusterOf(policy: Policy, spec: JobSpec): { name: string; cluster: ClusterPolicy } {
  const name = spec.cluster;
  const cluster = name === undefined ? undefined : policy.clusters[name];
  if (name === undefined || cluster === undefined) {
    throw new InvalidArgumentError('cluster', `a ${spec.job} job is about a cluster: name one of ${Object.keys(policy.clusters).join(', ') || '(none in the policy)'}`);
  }
  return { name, cluster };
}

function repositoryOf(policy: Policy, name: string | undefined, job: Job): { name: string; repository: RepositoryPolicy } {
  const repository = name === undefined ? undefined : policy.repositories[name];
  if (name === undefined || repository === undefined) {
    throw new InvalidArgumentError('repository', `a ${job} job is about a repository: name one of ${Object.keys(policy.repositories).join(', ') || '(none in the policy)'}`);
  }
  return { name, repository };
}

/**
 * A look at one repository (`coffer info`): its size, backups and leases for
 * the agent's metrics; with `reclaimable`, what garbage collection would free
 * (reads every manifest and WAL record: after expire and gc only).
 */
export function infoStep(policy: Policy, repositoryName: string, env: NodeJS.ProcessEnv, reclaimable: boolean): JobStep {
  const { repository } = repositoryOf(policy, repositoryName, 'gc');
  const access = repositoryAccess(repositoryName, repository, env);
  return {
    name: `info ${repositoryName}`,
    args: [...access.args, 'info', '--json', ...(reclaimable ? ['--reclaimable'] : [])],
    env: access.env,
    labels: { command: 'info', repository: repository.location, stanza: '', target: '' },
  };
}

/** One `coffer mirror` step per destination of `name`. */
function mirrorSteps(policy: Policy, name: string, repository: RepositoryPolicy, env: NodeJS.ProcessEnv, command: 'mirror' | 'info', extra: string[]): JobStep[] {
  const source = repositoryAccess(name, repository, env);
  return (repository.mirrors ?? []).map((m) => {
    const dest = repositoryOf(policy, m, 'mirror');
    const to = destinationAccess(m, dest.repository, env);
    return {
      name: `${command === 'mirror' ? 'mirror' : 'mirror lag'} ${name} → ${m}`,
      args: [...source.args, 'mirror', ...to.args, ...extra, '--json'],
      env: { ...source.env, ...to.env },
      labels: { command, repository: repository.location, stanza: '', target: dest.repository.location },
    };
  });
}

/**
 * A look at how far each mirror of a repository is behind (`coffer mirror
 * --dry-run`: both stores listed, nothing copied): the objects and bytes a
 * mirror run would copy now and the age of the oldest. Labelled `info`, with
 * the destination as target, so the mirror job's own series stay its own.
 */
export function mirrorLagSteps(policy: Policy, repositoryName: string, env: NodeJS.ProcessEnv): JobStep[] {
  const { repository } = repositoryOf(policy, repositoryName, 'mirror');
  return mirrorSteps(policy, repositoryName, repository, env, 'info', ['--dry-run']);
}

/** The slot (and application_name) a cluster's receiver uses: the policy's, else `coffer`. */
export function receiverSlot(policy: Policy, cluster: string): string | undefined {
  const s = policy.schedules.find((x) => x.job === 'wal' && x.cluster === cluster && x.stream);
  return s ? (s.stream!.slot ?? 'coffer') : undefined;
}

/**
 * The long-lived `coffer wal-receive` of a cluster whose wal job streams:
 * the agent runs it, and starts it again whenever it ends.
 */
export function walReceiveStep(policy: Policy, clusterName: string, env: NodeJS.ProcessEnv = process.env): JobStep {
  const { name, cluster } = clusterOf(policy, { job: 'wal', cluster: clusterName });
  const stream = policy.schedules.find((x) => x.job === 'wal' && x.cluster === name && x.stream)?.stream;
  if (!stream) throw new InvalidArgumentError('stream', `the wal job of cluster ${name} does not stream`);
  const { repository } = repositoryOf(policy, cluster.repository, 'wal');
  const access = repositoryAccess(cluster.repository, repository, env);
  const stanza = cluster.stanza ?? name;
  const server: Record<string, string> = {};
  if (cluster.password) server.PGPASSWORD = readSecret(cluster.password, `clusters.${name}.password`, env);
  const args = [...access.args, '--stanza', stanza, 'wal-receive', '--db', cluster.connection, '--slot', stream.slot ?? 'coffer'];
  if (stream.flushIntervalSeconds !== undefined) args.push('--flush-interval', String(stream.flushIntervalSeconds));
  if (stream.synchronous) args.push('--synchronous');
  const mirrors = stream.mirrors ? walMirrorAccess(policy, cluster.repository, repository, env) : { args: [], env: {} };
  return { name: `wal-receive ${name}`, args: [...mirrors.args, ...args], env: { ...access.env, ...mirrors.env, ...server }, labels: { command: 'wal', repository: repository.location, stanza, target: '' } };
}

/** `coffer wal-end` for a cluster's repository and stanza: where its WAL of `timeline` ends there. */
export function walEndStep(policy: Policy, clusterName: string, id: { systemIdentifier: string; timeline: number; segmentBytes: number }, env: NodeJS.ProcessEnv = process.env): JobStep {
  const { name, cluster } = clusterOf(policy, { job: 'wal', cluster: clusterName });
  const { repository } = repositoryOf(policy, cluster.repository, 'wal');
  const access = repositoryAccess(cluster.repository, repository, env);
  const stanza = cluster.stanza ?? name;
  const args = [...access.args, '--stanza', stanza, 'wal-end', '--timeline', String(id.timeline), '--system-id', id.systemIdentifier, '--segment-bytes', String(id.segmentBytes), '--json'];
  return { name: `wal-end ${name}`, args, env: access.env, labels: { command: 'wal', repository: repository.location, stanza, target: '' } };
}

/** Where drill reports go when the policy does not say. */
export const DEFAULT_DRILL_REPORTS = '/var/lib/coffer/drills';

const opt = (flag: string, value: number | undefined) => (value === undefined ? [] : [flag, String(value)]);

/** The verification the policy asks of `verify` and `drill verify` for a cluster. */
function verificationArgs(policy: Policy, name: string): string[] {
  const v = policy.verification ?? {};
  const smoke = (v.smoke ?? []).flatMap((q) => ['--smoke-query', JSON.stringify(q)]);
  // Where the policy expires this cluster's backups, WAL before the PITR window is gone on purpose.
  const expires = policy.schedules.some((s) => s.job === 'expire' && s.cluster === name);
  const now = new Date();
  const window = expires ? (now.getTime() - pitrCutoff(policy.retention ?? {}, now).getTime()) / 86_400_000 : undefined;
  return [...opt('--others', v.others), ...opt('--pitr-window', window), ...opt('--read-data-days', v.readDataDays), ...opt('--read-data-sample', v.readDataSamplePercent), ...smoke];
}

/**
 * `--wal-mirror` for each mirror of the repository (its region and endpoint
 * in the URL), and their credentials as a mirror destination's: one set, so
 * mirrors that name different credentials cannot share a receiver.
 */
function walMirrorAccess(policy: Policy, name: string, repository: RepositoryPolicy, env: NodeJS.ProcessEnv): { args: string[]; env: Record<string, string> } {
  const names = repository.mirrors ?? [];
  if (names.length === 0) throw new InvalidArgumentError('stream.mirrors', `repository ${name} lists no mirrors to stream WAL to`);
  const args: string[] = [];
  let credentials: { from: string; env: Record<string, string> } | undefined;
  for (const m of names) {
    const { repository: mirror } = repositoryOf(policy, m, 'wal');
    const query = new URLSearchParams({ ...(mirror.region ? { region: mirror.region } : {}), ...(mirror.endpoint ? { endpoint: mirror.endpoint } : {}) }).toString();
    args.push('--wal-mirror', query ? `${mirror.location}?${query}` : mirror.location);
    if (!mirror.credentials) continue;
    const { env: destEnv } = destinationAccess(m, mirror, env);
    delete destEnv.COFFER_TO_AWS_REGION;
    if (credentials && JSON.stringify(credentials.env) !== JSON.stringify(destEnv)) {
      throw new InvalidArgumentError('stream.mirrors', `mirrors ${credentials.from} and ${m} name different credentials; a receiver writing to both needs one set (or none: the SDK's chain, such as an instance role allowed both buckets)`);
    }
    credentials = { from: m, env: destEnv };
  }
  return { args, env: credentials?.env ?? {} };
}

/** The steps of one job of `policy`, with secrets read from `env` and the files the policy names. */
export function jobSteps(policy: Policy, spec: JobSpec, env: NodeJS.ProcessEnv = process.env, policyFile?: string): JobStep[] {
  const id = jobId(spec);
  if (spec.job === 'drill' && spec.drill === 'failover') {
    // About the failover section's cluster, through the policy file itself: the drill reads the decision log and every node.
    if (!policyFile) throw new InvalidArgumentError('drill', 'the failover drill runs with the policy file it was scheduled from');
    const d = policy.drills ?? {};
    const labels = { command: spec.job, repository: '', stanza: spec.cluster ?? policy.failover?.cluster ?? '', target: '' };
    return [{ name: id, args: ['drill', 'failover', '--json', '--policy', policyFile, '--reports', d.reports ?? DEFAULT_DRILL_REPORTS, ...opt('--rpo-target', d.rpoTargetSeconds), ...opt('--rto-target', d.rtoTargetSeconds)], env: {}, labels }];
  }
  if (spec.job === 'drill' && spec.drill === 'evacuate') {
    // Region B's repository, with region B's keys alone; everything else from the policy file itself.
    if (!policyFile) throw new InvalidArgumentError('drill', 'the evacuation drill runs with the policy file it was scheduled from');
    const d = policy.drills ?? {};
    const e = d.evacuate;
    if (!e) throw new InvalidArgumentError('drills.evacuate', 'the policy has no drills.evacuate section');
    const { name, repository } = repositoryOf(policy, e.repository, 'drill');
    const access = repositoryAccess(name, repository, env);
    const cluster = policy.clusters[e.cluster];
    const stanza = cluster?.stanza ?? e.cluster;
    const labels = { command: spec.job, repository: repository.location, stanza, target: '' };
    return [{ name: id, args: [...access.args, '--stanza', stanza, 'drill', 'evacuate', '--json', '--policy', policyFile, '--reports', d.reports ?? DEFAULT_DRILL_REPORTS, ...opt('--rpo-target', d.rpoTargetSeconds), ...opt('--rto-target', d.rtoTargetSeconds)], env: access.env, labels }];
  }
  if (spec.job === 'wal') throw new InvalidArgumentError('job', 'the wal job runs all the time under `coffer agent` (it watches the archive); PostgreSQL archives with archive_command = \'coffer wal-push %p\'');
  if (spec.job === 'mirror' || spec.job === 'gc') {
    const { name, repository } = repositoryOf(policy, spec.repository, spec.job);
    const source = repositoryAccess(name, repository, env);
    const labels = { command: spec.job, repository: repository.location, stanza: '', target: '' };
    if (spec.job === 'gc') return [{ name: id, args: [...source.args, 'gc', '--json'], env: source.env, labels }];
    if ((repository.mirrors ?? []).length === 0) throw new InvalidArgumentError('repository', `repository ${name} lists no mirrors`);
    return mirrorSteps(policy, name, repository, env, 'mirror', []);
  }
  const { name, cluster } = clusterOf(policy, spec);
  const { repository } = repositoryOf(policy, cluster.repository, spec.job);
  const access = repositoryAccess(cluster.repository, repository, env);
  const stanza = cluster.stanza ?? name;
  const base = [...access.args, '--stanza', stanza];
  const labels = { command: spec.job, repository: repository.location, stanza, target: '' };
  const step = (args: string[], extra: Record<string, string> = {}): JobStep[] => [{ name: id, args: [...base, ...args], env: { ...access.env, ...extra }, labels }];
  switch (spec.job) {
    case 'backup': {
      const server: Record<string, string> = {};
      const password = cluster.standby ? cluster.standby.password : cluster.password;
      if (password) server.PGPASSWORD = readSecret(password, `clusters.${name}${cluster.standby ? '.standby' : ''}.password`, env);
      if (cluster.standby && cluster.password) server.COFFER_PRIMARY_PGPASSWORD = readSecret(cluster.password, `clusters.${name}.password`, env);
      const db = cluster.standby ? ['--db', cluster.standby.connection, '--primary-db', cluster.connection] : ['--db', cluster.connection];
      return step(['backup', '--json', ...db, ...(cluster.pgdata ? ['--pgdata', cluster.pgdata] : []), ...(cluster.maxRate ? ['--max-rate', cluster.maxRate.replace(/\s+/g, '')] : [])], server);
    }
    case 'expire': {
      const r = policy.retention ?? {};
      return step(['expire', '--json', ...opt('--keep-min', r.keepMin), ...opt('--keep-hot', r.hotDays), ...opt('--keep-warm', r.warmDays), ...opt('--keep-cold', r.coldMonths), ...opt('--pitr-window', r.pitrWindowDays)]);
    }
    case 'verify':
      return step(['verify', '--json', ...verificationArgs(policy, name), ...opt('--rpo', policy.verification?.rpoSeconds)]);
    case 'drill': {
      if (spec.drill !== 'verify') return step(['drill', 'restore', 'latest', '--json']);
      const d = policy.drills ?? {};
      return step([
        'drill', 'verify', '--json', ...verificationArgs(policy, name),
        '--reports', d.reports ?? DEFAULT_DRILL_REPORTS,
        ...opt('--rpo-target', d.rpoTargetSeconds), ...opt('--rto-target', d.rtoTargetSeconds),
        ...(d.projectBytes ? ['--project-bytes', d.projectBytes.replace(/\s+/g, '')] : []),
      ]);
    }
  }
}
