/**
 * The `coffer` command: argument parsing and output only. Each command is a
 * file in `commands/` over the libraries' callable API, which a service could
 * call the same way; this file sets up the global options and maps typed
 * errors to exit statuses.
 */
import { writeFile } from 'node:fs/promises';
import { Command, CommanderError, Option } from 'commander';
import { AuditLog, CofferError, fromSystemError, InvalidArgumentError, NoApplicableKeyError, openReplicas, Repository, type AuditValue, type ObjectStore } from '@coffer/engine';
import { CommandExit, listOption, VERSION, type CliContext, type CliIo, type GlobalOptions } from './context.js';
import { EXIT_CODES, EXIT_INTERNAL, EXIT_USAGE } from './exit-codes.js';
import { absoluteLocation, keyProviders, localProvider, mirrorStoreAt, OPENED_STORES, openStore } from './repo-options.js';
import type { S3RequestStats } from '@coffer/aws';
import { register as agent } from './commands/agent.js';
import { register as auditCommand } from './commands/audit.js';
import { register as backup } from './commands/backup.js';
import { register as bucket } from './commands/bucket.js';
import { register as check } from './commands/check.js';
import { register as drill } from './commands/drill.js';
import { register as expire } from './commands/expire.js';
import { register as failover } from './commands/failover.js';
import { register as gc } from './commands/gc.js';
import { register as info } from './commands/info.js';
import { register as init } from './commands/init.js';
import { register as keep } from './commands/keep.js';
import { register as key } from './commands/key.js';
import { register as keyFile } from './commands/key-file.js';
import { register as list } from './commands/list.js';
import { register as mirror } from './commands/mirror.js';
import { register as policy } from './commands/policy.js';
import { register as repair } from './commands/repair.js';
import { register as restore } from './commands/restore.js';
import { register as runJob } from './commands/run.js';
import { register as stanza } from './commands/stanza.js';
import { register as status } from './commands/status.js';
import { register as verify } from './commands/verify.js';
import { register as walFetch } from './commands/wal-fetch.js';
import { register as walEnd } from './commands/wal-end.js';
import { register as walPush } from './commands/wal-push.js';
import { register as walArchiver } from './commands/wal-archiver.js';
import { register as walReceive } from './commands/wal-receive.js';

export type { CliIo };

/** What a run did, for its metrics and its audit record: the command that ran, the figures and facts it reported, the repository it opened. */
export class RunRecord {
  job: string | undefined;
  readonly figures: Record<string, number> = {};
  readonly details: Record<string, AuditValue> = {};
  readonly startedAt = new Date();
  readonly t0 = performance.now();
  /** The repository the command opened first: its audit record goes there. */
  repo: Repository | undefined;
  error: string | undefined;
  private log: AuditLog | undefined;
  /** This process's audit chain (WAL pushes, one process per segment, do not look for other chains). */
  get audit(): AuditLog {
    this.log ??= new AuditLog({ link: this.job !== 'wal-push' });
    return this.log;
  }
}

/** Commands that write WAL to `--wal-mirror`s or read it from them (restore: in the restore_command it writes). */
const WAL_MIRROR_COMMANDS = new Set(['wal-push', 'wal-archiver', 'wal-receive', 'wal-fetch', 'wal-prefetch', 'restore']);

/**
 * Commands that leave an audit record in the repository they opened: those that write, delete or read
 * data. Not: listings and metadata (list, info), and wal-fetch with its prefetcher (restore_command runs
 * once a segment; a restore's own record tells of the recovery).
 */
const NOT_AUDITED = new Set(['list', 'info', 'wal-fetch', 'wal-prefetch', 'audit', 'status', 'policy check', 'policy schema', 'run', 'agent']);

export function buildProgram(io: CliIo, record = new RunRecord()): Command {
  const program = new Command('coffer')
    .description('Content-addressed, deduplicating, encrypted backups')
    .version(`coffer ${VERSION}`, '-V, --version', 'print the version')
    .addOption(new Option('--repo <path|url>', 'repository: a directory path, file:// URL or s3://bucket/prefix (env COFFER_REPO)'))
    .addOption(new Option('--key-file <file>', 'key file instead of the COFFER_PASSPHRASE environment variable (env COFFER_KEY_FILE)'))
    .addOption(new Option('--kms-key-id <id>', 'AWS KMS key: wraps the data key at init; when opening, the only KMS key tried (env COFFER_KMS_KEY_ID)'))
    .addOption(new Option('--s3-endpoint <url>', 'S3-compatible endpoint (env AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL)'))
    .addOption(new Option('--s3-path-style', 'path-style S3 addressing (the default with an endpoint)'))
    .addOption(new Option('--no-s3-path-style', 'virtual-hosted S3 addressing'))
    .addOption(new Option('--s3-pack-storage-class <class>', 'storage class of packs (env COFFER_S3_PACK_STORAGE_CLASS)'))
    .addOption(new Option('--s3-metadata-storage-class <class>', 'storage class of indexes, manifests and WAL records (env COFFER_S3_METADATA_STORAGE_CLASS)'))
    .addOption(new Option('--s3-sse-kms-key-id <id>', 'S3 server-side encryption with this KMS key, on top of our own (env COFFER_S3_SSE_KMS_KEY_ID)'))
    .addOption(new Option('--s3-object-lock <mode:days>', 'Object Lock retention on every object written, e.g. COMPLIANCE:30 (env COFFER_S3_OBJECT_LOCK)'))
    .addOption(new Option('--stanza <name>', 'PostgreSQL: the cluster\'s stanza in the repository (env COFFER_STANZA; default main)'))
    .addOption(new Option('--lease-ttl <seconds>', 'time-to-live of the leases writers hold while they work (default 60): garbage collection waits this long, and half as long again, for a writer that stopped answering (env COFFER_LEASE_TTL)'))
    .addOption(new Option('--repository-id <id>', 'refuse any repository but this one (its id, as init printed it; env COFFER_REPOSITORY_ID)'))
    .addOption(
      new Option('--wal-mirror <path|url>', "WAL commands: also write WAL to this mirror of the repository (made by coffer mirror; repeatable), and read from it when the repository lacks a file or cannot answer; an s3:// URL may end in ?region=…&endpoint=…; its credentials: COFFER_TO_AWS_* (default: the AWS SDK's chain)").argParser((value: string, prev: string[] | undefined) => listOption('--wal-mirror', 'path')(value, prev ?? [])),
    )
    .addOption(new Option('--metrics-textfile <file>', "after the command, write its metrics to FILE in Prometheus's text format, for node_exporter's textfile collector (env COFFER_METRICS_TEXTFILE)"))
    .option('-q, --quiet', 'no progress display')
    .showHelpAfterError()
    .exitOverride()
    .configureOutput({ writeOut: (s) => io.stdout.write(s), writeErr: (s) => io.stderr.write(s) });

  const globals = (): GlobalOptions => program.opts<GlobalOptions>();
  const openRepoAt = async (store?: ObjectStore, g: GlobalOptions = globals()) => {
    store ??= await openStore(globals(), io.env);
    try {
      const expectRepositoryId = g.repositoryId ?? io.env.COFFER_REPOSITORY_ID;
      const warn = (line: string) => io.stderr.write(`coffer: warning: ${line}\n`);
      const repo = await Repository.open(store, await keyProviders(g, io.env, warn), { onWarning: warn, ...(expectRepositoryId ? { expectRepositoryId } : {}) });
      if (!record.repo) {
        record.repo = repo;
        // The audit record's link to another chain is looked up while the command works.
        if (record.job && !NOT_AUDITED.has(record.job)) record.audit.prepare(repo);
      }
      return repo;
    } catch (e) {
      // No key given at all, and the repository is not one KMS could open: a missing setting, not a wrong key.
      if (e instanceof NoApplicableKeyError && !(await localProvider(g, io.env)) && !(g.kmsKeyId ?? io.env.COFFER_KMS_KEY_ID)) {
        throw new InvalidArgumentError('key', `set COFFER_PASSPHRASE or pass --key-file FILE (or set COFFER_KEY_FILE): the repository is wrapped by ${e.wrappedBy.join(', ')}`);
      }
      throw e;
    }
  };
  const openRepo = () => openRepoAt();
  const openWalRepo = async (writer: boolean) => {
    const g = globals();
    const mirrors = g.walMirror ?? [];
    if (mirrors.length === 0) return openRepoAt();
    const stores = [await openStore(g, io.env), ...(await Promise.all(mirrors.map((m) => mirrorStoreAt(m, g, io.env))))];
    return openRepoAt(await openReplicas(stores, { writer, what: '--wal-mirror' }));
  };
  const say = (s: string): void => {
    io.stdout.write(s + '\n');
  };

  // The command that runs, named by its path (`key add`), for the metrics of this run.
  program.hook('preAction', (_root, action) => {
    const path: string[] = [];
    for (let c: Command | null = action; c && c !== program; c = c.parent) path.unshift(c.name());
    record.job = path.join(' ');
    if ((globals().walMirror ?? []).length > 0 && !WAL_MIRROR_COMMANDS.has(record.job)) {
      throw new InvalidArgumentError('--wal-mirror', `only the WAL commands (${[...WAL_MIRROR_COMMANDS].join(', ')}) use mirrors directly; ${record.job} works on the repository, and coffer mirror copies it`);
    }
  });
  const report = (figures: Readonly<Record<string, number>>) => void Object.assign(record.figures, figures);
  const audit = (details: Readonly<Record<string, AuditValue>>) => void Object.assign(record.details, details);
  const ctx: CliContext = { program, io, globals, openRepo, openRepoAt, openWalRepo, say, report, audit, auditAnchor: () => record.audit.next, adopt: (repo) => void (record.repo = repo) };
  for (const register of [init, bucket, backup, walPush, walArchiver, walReceive, walFetch, walEnd, stanza, list, restore, check, repair, expire, gc, keep, info, drill, verify, policy, runJob, agent, failover, status, auditCommand, key, mirror, keyFile]) register(ctx);
  return program;
}

/** Runs the CLI; resolves to the process exit status. */
export async function runCli(argv: readonly string[], io: CliIo): Promise<number> {
  const record = new RunRecord();
  const program = buildProgram(io, record);
  const status = await run(program, argv, io, record);
  if (record.repo && record.job && !NOT_AUDITED.has(record.job)) {
    // Best effort: a reader without write access (a DR region's read-only credentials) still gets its work done.
    await record.audit
      .append(record.repo, { command: record.job, result: status === 0 ? 'ok' : 'failed', exitStatus: status, details: { ...record.figures, ...record.details }, ...(record.error ? { error: record.error.slice(0, 2000) } : {}) })
      .catch((e: Error) => io.stderr.write(`coffer: warning: could not append the audit record: ${e.message}\n`));
  }
  const file = program.opts<GlobalOptions>().metricsTextfile ?? io.env.COFFER_METRICS_TEXTFILE;
  // `run` hands the textfile to its job's steps, each writing its own; the agent serves /metrics.
  if (file && record.job && record.job !== 'run' && record.job !== 'agent') {
    try {
      const { writeJobMetrics } = await import('@coffer/agent');
      const g = program.opts<GlobalOptions>();
      const location = g.repo ?? io.env.COFFER_REPO;
      const stanza = g.stanza ?? io.env.COFFER_STANZA;
      await writeJobMetrics(file, {
        job: record.job,
        repository: location ? absoluteLocation(location) : '',
        ...(stanza ? { stanza } : {}),
        // A mirror's destination, as the agent labels it.
        ...(record.job === 'mirror' && typeof record.details.to === 'string' ? { target: record.details.to } : {}),
        startedAt: record.startedAt,
        seconds: (performance.now() - record.t0) / 1000,
        exitStatus: status,
        figures: record.figures,
      });
    } catch (e) {
      // The job's own outcome stands; the metrics file is named, so a monitoring gap is visible.
      io.stderr.write(`coffer: warning: could not write metrics to ${file}: ${(e as Error).message}\n`);
    }
  }
  // A run started by the agent tells it what it did (figures for its metrics) through this file.
  const recordFile = io.env.COFFER_RUN_RECORD;
  if (recordFile && record.job) {
    // S3 requests by operation, per store: the agent adds them up into counters.
    const s3 = OPENED_STORES.flatMap((st) => ('stats' in st ? [{ location: st.properties.location, ...(st as unknown as { stats: S3RequestStats }).stats }] : []));
    await writeFile(recordFile, JSON.stringify({ job: record.job, exitStatus: status, figures: record.figures, s3 }), { mode: 0o600 }).catch((e: Error) => {
      io.stderr.write(`coffer: warning: could not write the run record ${recordFile}: ${e.message}\n`);
    });
  }
  return status;
}

async function run(program: Command, argv: readonly string[], io: CliIo, record: RunRecord): Promise<number> {
  try {
    await program.parseAsync([...argv], { from: 'user' });
    return 0;
  } catch (e) {
    if (e instanceof CommandExit) {
      record.error = e.reason;
      if (e.reason) io.stderr.write(`coffer: ${e.reason}\n`);
      return e.status;
    }
    if (e instanceof CommanderError) return e.exitCode === 0 ? 0 : EXIT_USAGE;
    const typed = e instanceof CofferError ? e : fromSystemError(e);
    if (typed) {
      record.error = typed.message;
      io.stderr.write(`coffer: ${typed.message}\n`);
      return EXIT_CODES[typed.code] ?? EXIT_INTERNAL;
    }
    record.error = `unexpected error: ${(e as Error)?.message ?? String(e)}`;
    io.stderr.write(`coffer: unexpected error: ${(e as Error)?.stack ?? String(e)}\n`);
    return EXIT_INTERNAL;
  }
}