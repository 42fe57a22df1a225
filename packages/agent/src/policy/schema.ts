/**
 * The policy file's shape: clusters, repositories (a primary and its mirrors,
 * each with its keys), scheduled jobs, retention, verification, alert
 * thresholds, metrics and logs. Every object is strict, so a misspelt key is
 * an error rather than a setting silently ignored. Secrets never appear in
 * it: where one is needed the policy names an environment variable or a
 * secret file that holds it, and a value written inline is refused.
 *
 * The same schema validates files (`load.ts`) and is published as JSON
 * Schema for editors (`coffer policy schema`, `config/backup-policy.schema.json`).
 */
import { Cron } from 'croner';
import * as z from 'zod/mini';

const name = z.string().check(z.regex(/^[a-z0-9][a-z0-9._-]{0,62}$/, 'expected a name of lower-case letters, digits, ".", "_" or "-" (at most 63)'));
const absolutePath = z.string().check(z.regex(/^\//, 'expected an absolute path'));
const positive = z.number().check(z.positive());
const wholeDays = z.int().check(z.nonnegative());

const SECRET_INLINE = 'a secret is never written in the policy: name an environment variable ({ env: NAME }) or a secret file ({ file: /path })';

/** Where a secret is: an environment variable's name, or a file the operator provisioned. */
export const secretRef = z.union([z.strictObject({ env: z.string().check(z.regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'expected an environment variable name')) }), z.strictObject({ file: absolutePath })], {
  error: (issue) => (typeof issue.input === 'string' || typeof issue.input === 'number' ? SECRET_INLINE : 'expected { env: NAME } or { file: /path }'),
});

/** A libpq connection string or URI that carries no password (it comes from `password`, PGPASSFILE or a .pgpass). */
const connection = z.string().check(
  z.minLength(1),
  z.refine((s) => !/(^|\s)password\s*=/i.test(s) && !/^postgres(ql)?:\/\/[^/@]*:[^/@]*@/i.test(s), { error: 'a password in the connection string: give it with `password: { env: NAME }` or a .pgpass file' }),
);

/** A time zone the runtime knows (IANA names). */
const timeZone = z.string().check(
  z.refine(
    (tz) => {
      try {
        new Intl.DateTimeFormat('en', { timeZone: tz });
        return true;
      } catch {
        return false;
      }
    },
    { error: 'expected an IANA time zone such as UTC or Europe/Paris' },
  ),
);

/** A cron expression croner accepts (five or six fields, or @daily and the like). */
const cron = z.string().check(
  z.refine(
    (expr) => {
      try {
        new Cron(expr, { paused: true });
        return true;
      } catch {
        return false;
      }
    },
    { error: 'expected a cron expression: five fields (minute hour day-of-month month day-of-week), six with seconds first, or @hourly, @daily, @weekly…' },
  ),
);

const keysSchema = z.union(
  [
    z.strictObject({ kms: z.strictObject({ keyId: z.string().check(z.minLength(1)), region: z.optional(z.string()), endpoint: z.optional(z.string()) }) }),
    z.strictObject({ keyFile: secretRef }),
    z.strictObject({ passphrase: secretRef }),
  ],
  { error: 'expected one of { kms: { keyId } }, { keyFile: { file: /path } }, { passphrase: { env: NAME } }' },
);

const repositorySchema = z.strictObject({
  /** A directory, or s3://bucket/prefix. */
  location: z.string().check(z.regex(/^(\/|s3:\/\/[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](\/.*)?$)/, 'expected an absolute directory or s3://bucket/prefix')),
  region: z.optional(z.string()),
  endpoint: z.optional(z.string()),
  keys: keysSchema,
  /** S3 credentials; without them the SDK's default chain (instance role, web identity…) applies. */
  credentials: z.optional(z.strictObject({ accessKeyId: secretRef, secretAccessKey: secretRef, sessionToken: z.optional(secretRef) })),
  /** Repositories this one is mirrored to (names under `repositories`). */
  mirrors: z.optional(z.array(name)),
});

const clusterSchema = z.strictObject({
  connection,
  password: z.optional(secretRef),
  pgdata: z.optional(absolutePath),
  stanza: z.optional(name),
  /** The repository its backups and WAL go to (a name under `repositories`). */
  repository: name,
  /** Take base backups from this standby instead of the primary. */
  standby: z.optional(z.strictObject({ connection, password: z.optional(secretRef) })),
  /** Backup reads per second, at most (e.g. "200MB"). */
  maxRate: z.optional(z.string().check(z.regex(/^\d+(\.\d+)?\s*(B|KB|MB|GB|KiB|MiB|GiB)$/, 'expected a rate such as 200MB or 1GiB'))),
});

/** Where failover is decided: one store every observer and guard reaches (a bucket in the witness's region, or a directory for a test). */
const decisionStoreSchema = z.strictObject({
  location: z.string().check(z.regex(/^(\/|s3:\/\/[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](\/.*)?$)/, 'expected an absolute directory or s3://bucket/prefix')),
  region: z.optional(z.string()),
  endpoint: z.optional(z.string()),
  credentials: z.optional(z.strictObject({ accessKeyId: secretRef, secretAccessKey: secretRef, sessionToken: z.optional(secretRef) })),
});

/** An RFC 2136 dynamic update signed with TSIG: the name's A/AAAA records replaced by an address. */
const dnsUpdateSchema = z.strictObject({
  server: z.union([z.ipv4(), z.ipv6()]),
  port: z.optional(z.int().check(z.positive(), z.lte(65535))),
  zone: z.string().check(z.minLength(1)),
  name: z.string().check(z.minLength(1)),
  /** The record's TTL (default 5): resolvers keep the old address this long. */
  ttlSeconds: z.optional(z.int().check(z.nonnegative(), z.lte(86_400))),
  key: z.strictObject({ name: z.string().check(z.minLength(1)), algorithm: z.optional(z.enum(['hmac-sha256', 'hmac-sha512'])), secret: secretRef }),
});

/** A command: argv, run without a shell. */
const argv = z.array(z.string()).check(z.minLength(1));

const failoverSchema = z.strictObject({
  /** The cluster's name in the decision log. */
  cluster: name,
  decision: decisionStoreSchema,
  /** The database servers: the primary and its standbys, as observers reach them. */
  nodes: z
    .array(
      z.strictObject({
        name,
        connection,
        password: z.optional(secretRef),
        /**
         * How standbys stream from it, when not as `connection` says (e.g. another user, with the REPLICATION
         * attribute): a guard writes `primary_conninfo` from it, without password or database, when it is named primary.
         */
        replication: z.optional(connection),
        /** The address clients reach it at, for the DNS cutover. */
        address: z.optional(z.union([z.ipv4(), z.ipv6()])),
        /**
         * After a switchover away from this node, once the new primary is promoted, its guard runs this command
         * (argv, no shell; COFFER_FAILOVER_NODE, COFFER_FAILOVER_PRIMARY and COFFER_FAILOVER_EPOCH set): it makes
         * the stopped server a standby again and starts it, e.g. `coffer failover rejoin …` then the server's
         * start, as the server's user. Never after a failover. The failover drill needs it on every node.
         */
        rejoin: z.optional(argv),
      }),
    )
    .check(z.minLength(2)),
  /**
   * A cluster under `clusters` whose base backup the new primary's guard takes once it is promoted and traffic
   * moved (with the guard's --pgdata and connection): the first backup on the new timeline, without waiting
   * for the schedule.
   */
  backupAfterPromotion: z.optional(name),
  /**
   * A cluster under `clusters` whose repository holds this cluster's WAL, streamed by `wal-receive`: a named
   * standby replays what the repository holds of its timeline before it is promoted (commits a synchronous
   * receiver acknowledged are there, perhaps nowhere else), waiting up to `replayWaitSeconds` (default 60).
   */
  replayFrom: z.optional(name),
  replayWaitSeconds: z.optional(z.number().check(z.gte(1), z.lte(3600))),
  /** Every observer's name (one per region plus a witness): a failover needs a majority of them. */
  observers: z.array(name).check(z.minLength(1)),
  probe: z.optional(
    z.strictObject({
      /** Seconds between probes (default 1). */
      intervalSeconds: z.optional(z.number().check(z.gte(0.1), z.lte(600))),
      /** A probe that has not answered in this many seconds failed (default 2). */
      timeoutSeconds: z.optional(z.number().check(z.gte(0.1), z.lte(600))),
      /** Consecutive failed probes that make an observer vote "down" (default 3). */
      misses: z.optional(z.int().check(z.positive(), z.lte(100))),
      /** The misses must lie within this many seconds (default 30). */
      windowSeconds: z.optional(z.number().check(z.gte(1), z.lte(3600))),
    }),
  ),
  lease: z.optional(
    z.strictObject({
      /** The primary's lease: it fences itself when it cannot renew within this (default 10). */
      ttlSeconds: z.optional(z.number().check(z.gte(1), z.lte(600))),
      /** Waited beyond the time-to-live before a silent lease counts as ended (default half of it, at least 1). */
      marginSeconds: z.optional(z.number().check(z.gte(0.5), z.lte(600))),
    }),
  ),
  /** How traffic moves to a new primary, in this order, once it is promoted. */
  cutover: z.optional(
    z.strictObject({
      /** An RFC 2136 dynamic update signed with TSIG: the name's A/AAAA records replaced by the node's address. */
      dns: z.optional(dnsUpdateSchema),
      /** A command run with COFFER_FAILOVER_NODE, COFFER_FAILOVER_ADDRESS and COFFER_FAILOVER_EPOCH set (argv, no shell). */
      command: z.optional(argv),
      /** A URL that gets {node, address, epoch} as a JSON POST. */
      webhook: z.optional(z.strictObject({ url: z.url(), bearer: z.optional(secretRef) })),
    }),
  ),
  /** A standby further behind the primary's last position seen is not promoted (default 16). */
  maxLagMiB: z.optional(z.number().check(z.gte(0))),
  /**
   * Failsafe: a primary that cannot reach the decision store stays up while a majority of observers, asked
   * directly, promise to vote no one down. Without this section it fences itself when its lease runs out.
   */
  failsafe: z.optional(
    z.strictObject({
      /** Every observer's address, host:port: `coffer failover watch` listens there, guards ask there. */
      endpoints: z.record(name, z.string().check(z.regex(/^(\[[0-9a-fA-F:.]+\]|[^\s:/\[\]]+):\d{1,5}$/, 'expected host:port'))),
      /** Where an observer remembers the epochs a switchover closed (default /var/lib/coffer/failsafe). */
      stateDir: z.optional(absolutePath),
      /** A token every failsafe request must carry (Authorization: Bearer); without one, anyone who reaches an endpoint may ask. */
      token: z.optional(secretRef),
    }),
  ),
});

export const JOBS = ['backup', 'wal', 'mirror', 'expire', 'gc', 'verify', 'drill'] as const;

const scheduleSchema = z.strictObject({
  job: z.enum(JOBS),
  /** The cluster it is about (backup, wal, expire, verify, drill). */
  cluster: z.optional(name),
  /** The repository it is about (mirror: the source; gc). */
  repository: z.optional(name),
  cron: z.optional(cron),
  timeZone: z.optional(timeZone),
  /** A run missed while the agent was down: run it once on start, or skip to the next. */
  missed: z.optional(z.enum(['run', 'skip'])),
  /** Tries before a run counts as failed, with backoff between (default 3). */
  attempts: z.optional(z.int().check(z.positive(), z.lte(20))),
  /**
   * The drill job: `restore` (default: the newest backup restored into a
   * sandbox and every file re-verified), `verify` (the nightly drill: a
   * verification reported against the `drills` targets, with a post-mortem)
   * `failover` (the weekly drill: a switchover to a standby and back under
   * a probe writer; needs `drills.failover.enabled`) or `evacuate` (the
   * quarterly drill: region A lost, region B takes over; needs
   * `drills.evacuate.enabled`).
   */
  drill: z.optional(z.enum(['restore', 'verify', 'failover', 'evacuate'])),
  /**
   * The wal job: stream WAL into the repository as well (`coffer wal-receive`,
   * run and restarted by the agent) for an RPO of about the flush interval.
   */
  stream: z.optional(
    z.strictObject({
      slot: z.optional(z.string().check(z.regex(/^[a-z0-9_]{1,63}$/, 'expected a replication slot name (lower-case letters, digits and _, at most 63)'))),
      flushIntervalSeconds: z.optional(z.number().check(z.gte(0.05), z.lte(3600))),
      /** Flush every message: for a receiver named in synchronous_standby_names (RPO 0). */
      synchronous: z.optional(z.boolean()),
      /** Write the stream to the repository's mirrors too (`--wal-mirror`): losing a region then loses at most the flush interval, not the mirror's lag. */
      mirrors: z.optional(z.boolean()),
    }),
  ),
});

const smokeSchema = z.strictObject({
  sql: z.string().check(z.minLength(1)),
  database: z.optional(z.string()),
  expect: z.optional(z.strictObject({ equals: z.optional(z.union([z.string(), z.number(), z.boolean()])), min: z.optional(z.number()), max: z.optional(z.number()) })),
});

export const policySchema = z.strictObject({
    version: z.literal(1),
    clusters: z.record(name, clusterSchema),
    repositories: z.record(name, repositorySchema),
    schedules: z.array(scheduleSchema),
    retention: z.optional(
      z.strictObject({
        hotDays: z.optional(wholeDays),
        warmDays: z.optional(wholeDays),
        coldMonths: z.optional(wholeDays),
        pitrWindowDays: z.optional(wholeDays),
        keepMin: z.optional(wholeDays),
      }),
    ),
    verification: z.optional(
      z.strictObject({
        smoke: z.optional(z.array(smokeSchema)),
        rpoSeconds: z.optional(positive),
        /** Besides the newest, how many backups each run verifies. */
        others: z.optional(wholeDays),
        readDataDays: z.optional(wholeDays),
        readDataSamplePercent: z.optional(z.number().check(z.gte(0), z.lte(100))),
      }),
    ),
    /** Drill reports and the targets drills are measured against. */
    drills: z.optional(
      z.strictObject({
        /** Where drill reports go, as JSON, markdown and SVG (default /var/lib/coffer/drills). */
        reports: z.optional(absolutePath),
        /** Data a loss may cost, at most (default 900: the seeds' 15 minutes). */
        rpoTargetSeconds: z.optional(positive),
        /** Time to recover, at most (default 1800: the seeds' 30 minutes). */
        rtoTargetSeconds: z.optional(positive),
        /** Production's size, when drills run on a smaller copy: the recovery time is projected to it (e.g. 2TB). */
        projectBytes: z.optional(z.string().check(z.regex(/^\d+(\.\d+)?\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)$/i, 'expected a size such as 500GB or 2TiB'))),
        /**
         * The failover drill (`coffer drill failover`): a switchover to a standby and back, on the cluster of
         * the `failover` section, under a probe writer. It moves production's primary twice, so it runs only
         * when `enabled` says so, and only when every node can rejoin (`failover.nodes[].rejoin`).
         */
        failover: z.optional(
          z.strictObject({
            enabled: z.boolean(),
            /** The standby switched to (default: the most advanced streaming standby). */
            to: z.optional(name),
            /** Longest wait for each step: a switchover to take writes, a node to stream again (default 180). */
            stepTimeoutSeconds: z.optional(z.number().check(z.gte(10), z.lte(3600))),
          }),
        ),
        /**
         * The regional evacuation drill (`coffer drill evacuate`): region A made unavailable by `loseRegion`,
         * region B taking over — its standby promoted, or the newest backup in region B's repository restored
         * with region B's keys alone — the name moved, a write accepted, data lost and time taken measured;
         * then everything put back. Run it where region A may be taken away: `enabled` says so.
         */
        evacuate: z.optional(
          z.strictObject({
            enabled: z.boolean(),
            /** Region A's cluster (under clusters): the probe writer commits there until region A is lost. */
            cluster: name,
            /** Region B's repository (under repositories, with region B's keys): the agent's job opens it. */
            repository: name,
            /** Makes region A unavailable (argv, no shell): stop its server, disable its KMS key, close its bucket. */
            loseRegion: argv,
            /** Brings region A back after the drill. */
            restoreRegion: z.optional(argv),
            /** Region B's standby of region A's primary, promoted; `rebuild` makes it a standby again after the drill. */
            standby: z.optional(z.strictObject({ connection, password: z.optional(secretRef), rebuild: z.optional(argv) })),
            /** Without a standby (or with --via restore): where region B restores and starts the cluster. */
            restore: z.optional(
              z.strictObject({
                dataDir: absolutePath,
                listen: z.union([z.ipv4(), z.ipv6()]),
                port: z.int().check(z.positive(), z.lte(65535)),
                /** Server binaries (default: those of the backup's major version on this machine). */
                pgBin: z.optional(absolutePath),
              }),
            ),
            /** The name clients use, moved to region B's address and back to region A's. */
            dns: z.optional(dnsUpdateSchema),
            addresses: z.optional(z.strictObject({ a: z.union([z.ipv4(), z.ipv6()]), b: z.union([z.ipv4(), z.ipv6()]) })),
            /** Longest wait for each step (default 1800). */
            stepTimeoutSeconds: z.optional(z.number().check(z.gte(10), z.lte(86_400))),
          }),
        ),
      }),
    ),
    alerts: z.optional(
      z.strictObject({
        rpoSeconds: z.optional(positive),
        walArchiveLagSeconds: z.optional(positive),
        replicaLagSeconds: z.optional(positive),
        backupAgeHours: z.optional(positive),
        verifyAgeHours: z.optional(positive),
        /** How old the oldest object a mirror lacks may get (default 3600). */
        mirrorLagSeconds: z.optional(positive),
      }),
    ),
    metrics: z.optional(z.strictObject({ listen: z.optional(z.string().check(z.regex(/^[^\s:]*:\d{1,5}$/, 'expected host:port'))), textfile: z.optional(absolutePath) })),
    logs: z.optional(z.strictObject({ level: z.optional(z.enum(['debug', 'info', 'warn', 'error'])), format: z.optional(z.enum(['json', 'pretty'])) })),
    /** Failover: observers, guards and where they decide (`coffer failover …`). */
    failover: z.optional(failoverSchema),
    /** The agent's own settings. */
    agent: z.optional(
      z.strictObject({
        /** Where the agent keeps its state (last runs, missed and interrupted runs) and status (default /var/lib/coffer/agent). */
        stateDir: z.optional(absolutePath),
        /** How often the WAL archive of each cluster is looked at, for RPO and archive lag (default 15). */
        walPollSeconds: z.optional(positive),
        /** How often every repository is looked at between jobs: size, leases, KMS keys, each mirror's lag (default 300). */
        repositoryLookSeconds: z.optional(positive),
        /** With a failover section: how often the decision log and every node are looked at, for status and the coffer_failover_* gauges (default 15). */
        failoverLookSeconds: z.optional(positive),
        /** Wait before the second try of a failed job, doubled for each try after (default 60). */
        retryDelaySeconds: z.optional(positive),
        /** On SIGTERM, how long running jobs get to end after being told to, before they are killed (default 60). */
        stopTimeoutSeconds: z.optional(positive),
      }),
    ),
  });

export type Policy = z.infer<typeof policySchema>;
export type SecretRef = z.infer<typeof secretRef>;
export type Schedule = Policy['schedules'][number];
export type Job = (typeof JOBS)[number];
export type ClusterPolicy = Policy['clusters'][string];
export type RepositoryPolicy = Policy['repositories'][string];
export type FailoverPolicy = NonNullable<Policy['failover']>;
