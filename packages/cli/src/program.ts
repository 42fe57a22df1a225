/**
 * The `coffer` command: argument parsing and output only. Every action is a
 * call into the libraries, which a service could make the same way.
 */
import { Command, CommanderError, Option } from 'commander';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  backupFiles,
  backupPostgres,
  backupToRestore,
  clusterIdentity,
  commandLine,
  DEFAULT_STANZA,
  defaultSpool,
  ensureStanza,
  listStanzas,
  prefetcherRunning,
  recoveryMode,
  restoreCommandStatus,
  upgradeStanza,
  validateStanzaName,
  walFetchScope,
  type RestoreCommandScope,
  restorePostgres,
  segmentsAfter,
  walFetch,
  walPrefetch,
  walPush,
  type BackupProgress,
  type RestoreProgress,
  checkRepository,
  CofferError,
  CorruptObjectError,
  InvalidArgumentError,
  LocalKeyProvider,
  MissingObjectError,
  mirror,
  Repository,
  NoApplicableKeyError,
  type KeyProvider,
  type ObjectStore,
  type MirrorReport,
  restoreBackup,
  type CheckReport,
} from '@coffer/engine';
import { EXIT_CODES, EXIT_INTERNAL, EXIT_USAGE } from './exit-codes.js';
import { humanBytes, progressBar } from './progress.js';
import { absoluteLocation, initProviders, keyProviders, KMS_PROVIDER, kmsProvider, localProvider, openStore, repoLocation as rawRepoLocation, storeAt, type RepoOptions } from './repo-options.js';

export interface CliIo {
  stdout: NodeJS.WriteStream;
  stderr: NodeJS.WriteStream;
  env: NodeJS.ProcessEnv;
}

interface GlobalOptions extends RepoOptions {
  quiet?: boolean;
  stanza?: string;
  repositoryId?: string;
}

/** Ends a command with an exit status of its own choosing (restore_command speaks to PostgreSQL in statuses). */
class CommandExit extends Error {
  constructor(
    readonly status: number,
    readonly reason?: string,
  ) {
    super(reason ?? `exit ${status}`);
  }
}

function intOption(name: string, min: number, max: number) {
  return (value: string): number => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < min || n > max) throw new InvalidArgumentError(name, `expected an integer from ${min} to ${max}, got ${JSON.stringify(value)}`);
    return n;
  };
}

/** This command's own entry point, for restore_command and background prefetch. */
const COFFER_BIN = fileURLToPath(new URL('../bin/coffer.js', import.meta.url));
const VERSION = (JSON.parse(readFileSync(fileURLToPath(new URL('../package.json', import.meta.url)), 'utf8')) as { version: string }).version;

interface RestoreCliOptions {
  to: string;
  delta?: boolean;
  targetTime?: string;
  targetLsn?: string;
  targetXid?: string;
  targetName?: string;
  target?: 'immediate';
  targetTimeline?: string;
  targetAction?: 'promote' | 'pause' | 'shutdown';
  targetExclusive?: boolean;
  standby?: boolean;
  tablespaceMap: string[];
  restoreCommand?: string;
  linkMap: string[];
  archive?: boolean;
  concurrency?: number;
  json?: boolean;
}

function parseDirMap(option: string, pairs: readonly string[]): Record<string, string> {
  const map: Record<string, string> = {};
  for (const pair of pairs) {
    const eq = pair.indexOf('=');
    if (eq <= 0 || eq === pair.length - 1) throw new InvalidArgumentError(option, `${JSON.stringify(pair)} is not NAME=DIR`);
    map[pair.slice(0, eq)] = resolve(pair.slice(eq + 1));
  }
  return map;
}

function repoLocation(g: GlobalOptions, env: NodeJS.ProcessEnv): string {
  return absoluteLocation(rawRepoLocation(g, env));
}

function stanzaOf(g: GlobalOptions, env: NodeJS.ProcessEnv): string {
  return validateStanzaName(g.stanza ?? env.COFFER_STANZA ?? DEFAULT_STANZA);
}

/**
 * The options that name this repository, its keys and the stanza, for a
 * coffer run by PostgreSQL or in the background; `repositoryId` pins the
 * repository so that a config swapped in later is refused.
 */
function repoArgs(g: GlobalOptions, env: NodeJS.ProcessEnv, repositoryId?: string): string[] {
  const keyFile = g.keyFile ?? env.COFFER_KEY_FILE;
  const pinned = repositoryId ?? g.repositoryId ?? env.COFFER_REPOSITORY_ID;
  return [
    '--repo',
    repoLocation(g, env),
    '--stanza',
    stanzaOf(g, env),
    ...(pinned ? ['--repository-id', pinned] : []),
    ...(keyFile ? ['--key-file', resolve(keyFile)] : []),
    ...(g.kmsKeyId ? ['--kms-key-id', g.kmsKeyId] : []),
    ...(g.s3Endpoint ? ['--s3-endpoint', g.s3Endpoint] : []),
    ...(g.s3PathStyle === true ? ['--s3-path-style'] : g.s3PathStyle === false ? ['--no-s3-path-style'] : []),
  ];
}

/** wal-fetch through this same coffer and repository, for the backup's cluster; the key comes from the server's environment or the key file. */
function defaultRestoreCommand(g: GlobalOptions, env: NodeJS.ProcessEnv, repositoryId: string, scope: RestoreCommandScope): string {
  return commandLine([process.execPath, COFFER_BIN, ...repoArgs({ ...g, stanza: scope.stanza }, env, repositoryId), 'wal-fetch', '--system-id', scope.systemIdentifier, '%f', '%p']);
}

export function buildProgram(io: CliIo): Command {
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
    .addOption(new Option('--repository-id <id>', 'refuse any repository but this one (its id, as init printed it; env COFFER_REPOSITORY_ID)'))
    .option('-q, --quiet', 'no progress display')
    .showHelpAfterError()
    .exitOverride()
    .configureOutput({ writeOut: (s) => io.stdout.write(s), writeErr: (s) => io.stderr.write(s) });

  const globals = (): GlobalOptions => program.opts<GlobalOptions>();
  const openRepoAt = async (store?: ObjectStore, g: GlobalOptions = globals()) => {
    store ??= await openStore(globals(), io.env);
    try {
      const expectRepositoryId = g.repositoryId ?? io.env.COFFER_REPOSITORY_ID;
      return await Repository.open(store, await keyProviders(g, io.env), expectRepositoryId ? { expectRepositoryId } : {});
    } catch (e) {
      // No key given at all, and the repository is not one KMS could open: a missing setting, not a wrong key.
      if (e instanceof NoApplicableKeyError && !(await localProvider(g, io.env)) && !(g.kmsKeyId ?? io.env.COFFER_KMS_KEY_ID)) {
        throw new InvalidArgumentError('key', `set COFFER_PASSPHRASE or pass --key-file FILE (or set COFFER_KEY_FILE): the repository is wrapped by ${e.wrappedBy.join(', ')}`);
      }
      throw e;
    }
  };
  const openRepo = () => openRepoAt();
  const say = (s: string): void => {
    io.stdout.write(s + '\n');
  };

  program
    .command('init')
    .description('create a repository (the passphrase or key file given becomes its first key)')
    .option('--chunk-min <bytes>', 'FastCDC minimum chunk size', intOption('--chunk-min', 64, 64 << 20))
    .option('--chunk-avg <bytes>', 'FastCDC average chunk size', intOption('--chunk-avg', 256, 64 << 20))
    .option('--chunk-max <bytes>', 'FastCDC maximum chunk size', intOption('--chunk-max', 1024, 64 << 20))
    .option('--relation-chunk-size <bytes>', 'PostgreSQL relation files: fixed chunks of this many bytes, a multiple of 8192 (default 8192; 0 = FastCDC)', intOption('--relation-chunk-size', 0, 16 << 20))
    .option('--relation-group-size <bytes>', 'PostgreSQL relation files: new chunks compressed together up to this many bytes (default 131072)', intOption('--relation-group-size', 8192, 16 << 20))
    .option('--pack-size <bytes>', 'target pack size', intOption('--pack-size', 64 << 10, 1 << 30))
    .option('--compression-level <n>', 'zstd level 1–19', intOption('--compression-level', 1, 19))
    .action(async (o: { chunkMin?: number; chunkAvg?: number; chunkMax?: number; relationChunkSize?: number; relationGroupSize?: number; packSize?: number; compressionLevel?: number }) => {
      const store = await openStore(globals(), io.env);
      const providers = await initProviders(globals(), io.env);
      const chunker = { ...(o.chunkMin ? { minSize: o.chunkMin } : {}), ...(o.chunkAvg ? { avgSize: o.chunkAvg } : {}), ...(o.chunkMax ? { maxSize: o.chunkMax } : {}) };
      const repo = await Repository.init(store, providers, {
        chunker,
        ...(o.relationChunkSize !== undefined ? { relationChunkSize: o.relationChunkSize } : {}),
        ...(o.relationGroupSize !== undefined ? { relationGroupBytes: o.relationGroupSize } : {}),
        ...(o.packSize ? { packSize: o.packSize } : {}), ...(o.compressionLevel ? { compressionLevel: o.compressionLevel } : {}) });
      say(`initialised repository ${repo.config.repositoryId} at ${repo.location}`);
    });

  program
    .command('backup')
    .description('back up PostgreSQL (connects with the PG* environment or --db), or a directory tree with --path')
    .option('--path <dir>', 'back up this directory tree instead of a PostgreSQL cluster')
    .option('--db <connstring>', 'libpq connection string (default: PGHOST, PGPORT, PGUSER, PGDATABASE, PGPASSWORD)')
    .option('--pgdata <dir>', "the cluster's data directory as seen here (default: the server's data_directory)")
    .option('--tag <tag>', 'label the backup (repeatable)', (v: string, prev: string[]) => [...prev, v], [] as string[])
    .option('--parent <id>', 'compare against this backup instead of the latest of the same source ("none" to read everything)')
    .option('--workers <n>', 'chunking threads (0 = none; default: one per core for large inputs)', intOption('--workers', 0, 64))
    .option('--no-archive-check', 'PostgreSQL: commit the backup without confirming its WAL is in this repository (it then needs WAL from elsewhere)')
    .option('--archive-timeout <seconds>', 'PostgreSQL: how long to wait for the backup\'s WAL to reach this repository (default 60)', intOption('--archive-timeout', 1, 86400))
    .option('--primary-db <connstring>', 'PostgreSQL, backing up a standby: the primary, asked to switch WAL segments so the backup\'s last segment is archived')
    .option('--json', 'print the result as JSON')
    .action(async (o: { path?: string; db?: string; pgdata?: string; tag: string[]; parent?: string; workers?: number; archiveCheck: boolean; archiveTimeout?: number; primaryDb?: string; json?: boolean }) => {
      if (o.path && (o.db || o.pgdata || o.primaryDb)) throw new InvalidArgumentError('--path', 'a files backup takes no --db, --pgdata or --primary-db');
      const repo = await openRepo();
      const bar = progressBar('backup ', io.stderr, !globals().quiet && !o.json);
      const t0 = performance.now();
      const common = {
        tags: o.tag,
        ...(o.parent ? { parent: o.parent } : {}),
        ...(o.workers !== undefined ? { workers: o.workers } : {}),
        onProgress: (p: BackupProgress) => bar.update(p.bytesDone, p.bytesTotal, `${p.filesDone}/${p.filesTotal} files, ${humanBytes(p.newBytes)} new`),
      };
      let result;
      try {
        result = o.path
          ? await backupFiles(repo, o.path, common)
          : await backupPostgres(repo, {
              ...common,
              stanza: stanzaOf(globals(), io.env),
              archiveCheck: o.archiveCheck,
              ...(o.archiveTimeout ? { archiveTimeoutMs: o.archiveTimeout * 1000 } : {}),
              ...(o.primaryDb ? { primaryConnectionString: o.primaryDb } : {}),
              ...(o.db ? { connectionString: o.db } : {}),
              ...(o.pgdata ? { pgdata: o.pgdata } : {}),
            });
      } finally {
        bar.stop();
      }
      const seconds = (performance.now() - t0) / 1000;
      const s = result.manifest.stats;
      const id = result.key.slice(-64, -52);
      const pg = result.manifest.postgres;
      if (o.json) return say(JSON.stringify({ id, key: result.key, seconds, stats: s, ...(pg ? { postgres: { ...pg, backupLabel: undefined, tablespaceMap: undefined } } : {}) }, null, 2));
      say(`backup ${id} (${result.manifest.label})`);
      if (pg) say(`  PostgreSQL ${pg.versionNum}, stanza ${result.manifest.stanza}, timeline ${pg.timeline}, ${pg.startLsn} → ${pg.stopLsn}${pg.standby ? ', from a standby' : ''}${pg.dataChecksums ? ', pages verified' : ''}${pg.archiveChecked === false ? ', WAL NOT confirmed in this repository (--no-archive-check)' : ', WAL archived here'}`);
      say(`  ${s.files} files, ${s.dirs} dirs, ${s.symlinks} symlinks, ${humanBytes(s.bytes)} (${s.unchangedFiles} files unchanged)`);
      say(`  new: ${s.newChunks} chunks, ${humanBytes(s.newBytes)} → ${humanBytes(s.storedBytes)} stored, in ${seconds.toFixed(2)} s`);
      if (s.skipped.length) say(`  skipped ${s.skipped.length}: ${s.skipped.slice(0, 10).join(', ')}${s.skipped.length > 10 ? ', …' : ''}`);
    });

  program
    .command('wal-push <path>')
    .description("archive a WAL file: PostgreSQL's archive_command ('coffer wal-push %p')")
    .option('--ahead <n>', 'also archive up to N other .ready files, in parallel', intOption('--ahead', 0, 64), 4)
    .action(async (path: string, o: { ahead: number }) => {
      const repo = await openRepo();
      await walPush(repo, path, { ahead: o.ahead, stanza: stanzaOf(globals(), io.env) });
    });

  program
    .command('wal-fetch <name> <dest>')
    .description("restore an archived WAL file: PostgreSQL's restore_command ('coffer wal-fetch %f %p'); exits 1 when it is not archived, 255 when it cannot tell (archive recovery stops instead of ending short)")
    .option('--prefetch <n>', 'fetch the next N segments into a spool in the background', intOption('--prefetch', 0, 64), 4)
    .option('--spool <dir>', 'prefetch spool (default: .coffer-spool beside <dest>)')
    .option('--system-id <id>', "the cluster's system identifier (default: global/pg_control of the data directory it runs in)")
    .action(async (name: string, dest: string, o: { prefetch: number; spool?: string; systemId?: string }) => {
      // restore_command runs in the data directory: its signal file says how PostgreSQL will read our status.
      const mode = await recoveryMode(process.cwd());
      let result;
      try {
        const repo = await openRepo();
        const scope = await walFetchScope(repo, stanzaOf(globals(), io.env), o.systemId, process.cwd());
        const spool = o.spool ?? defaultSpool(dest);
        result = await walFetch(repo, scope, name, dest, { spoolDir: spool });
        if (result.outcome !== 'absent') {
          const next = segmentsAfter(name, o.prefetch, result.size);
          if (next.length > 0 && !(await prefetcherRunning(spool))) {
            // Detached, so PostgreSQL gets this segment now while the next ones are on their way.
            const args = [COFFER_BIN, ...repoArgs(globals(), io.env), 'wal-prefetch', '--spool', spool, '--system-id', scope.systemIdentifier, ...next];
            spawn(process.execPath, args, { detached: true, stdio: 'ignore', env: io.env }).unref();
          }
        }
      } catch (e) {
        const reason = e instanceof CofferError ? e.message : `unexpected error: ${(e as Error)?.stack ?? String(e)}`;
        const status = restoreCommandStatus('failed', mode);
        throw new CommandExit(status, `${reason}${status === 1 ? ' (standby: PostgreSQL will ask again)' : ' (recovery stops here rather than end short of the archive; fix the cause and start the server again)'}`);
      }
      if (result.outcome === 'absent') throw new CommandExit(restoreCommandStatus('absent', mode));
    });

  program
    .command('wal-prefetch <names...>', { hidden: true })
    .requiredOption('--spool <dir>', 'spool directory')
    .requiredOption('--system-id <id>', "the cluster's system identifier")
    .action(async (names: string[], o: { spool: string; systemId: string }) => {
      const repo = await openRepo();
      await walPrefetch(repo, await walFetchScope(repo, stanzaOf(globals(), io.env), o.systemId, process.cwd()), names, o.spool);
    });

  const stanza = program.command('stanza').description('PostgreSQL cluster identities (stanzas) in the repository');

  stanza
    .command('create')
    .description("record the cluster's identity under --stanza (connects with the PG* environment or --db); backups and wal-push also do this on first use")
    .option('--db <connstring>', 'libpq connection string (default: PGHOST, PGPORT, PGUSER, PGDATABASE, PGPASSWORD)')
    .action(async (o: { db?: string }) => {
      const repo = await openRepo();
      const name = stanzaOf(globals(), io.env);
      const record = await ensureStanza(repo, name, await clusterIdentity(o.db));
      say(`stanza ${name}: system ${record.history[record.history.length - 1]!.systemIdentifier}`);
    });

  stanza
    .command('upgrade')
    .description("after pg_upgrade: record the cluster's new system identifier and version; older backups stay restorable")
    .option('--db <connstring>', 'libpq connection string (default: PGHOST, PGPORT, PGUSER, PGDATABASE, PGPASSWORD)')
    .action(async (o: { db?: string }) => {
      const repo = await openRepo();
      const name = stanzaOf(globals(), io.env);
      const { record, changed } = await upgradeStanza(repo, name, await clusterIdentity(o.db));
      const cur = record.history[record.history.length - 1]!;
      say(changed ? `stanza ${name}: now system ${cur.systemIdentifier} (PostgreSQL ${cur.major ?? '?'}), ${record.history.length} identities in its history` : `stanza ${name} already has system ${cur.systemIdentifier}`);
    });

  stanza
    .command('list')
    .description('stanzas and the history of each')
    .option('--json', 'print as JSON')
    .action(async (o: { json?: boolean }) => {
      const records = await listStanzas(await openRepo());
      if (o.json) return say(JSON.stringify(records, null, 2));
      if (records.length === 0) return say('no stanzas');
      for (const r of records) say(`${r.stanza}: ${r.history.map((h) => `system ${h.systemIdentifier} (PostgreSQL ${h.major ?? '?'}, ${h.reason} ${h.since})`).join(' → ')}`);
    });

  program
    .command('list')
    .description('list backups, oldest first (with --stanza, that cluster\'s only)')
    .option('--json', 'print as JSON')
    .action(async (o: { json?: boolean }) => {
      const repo = await openRepo();
      // --stanza (or COFFER_STANZA) given: that cluster's backups only.
      const only = globals().stanza ?? io.env.COFFER_STANZA;
      const backups = (await repo.listBackups()).filter((b) => only === undefined || b.stanza === only);
      if (o.json) return say(JSON.stringify(backups.map(({ stats, ...b }) => ({ ...b, files: stats.files, bytes: stats.bytes, newBytes: stats.newBytes, storedBytes: stats.storedBytes })), null, 2));
      if (backups.length === 0) return say('no backups');
      say(['ID', 'STARTED', 'KIND', 'STANZA', 'FILES', 'SIZE', 'ADDED', 'SOURCE'].join('\t'));
      for (const b of backups) say([b.id, b.startedAt, b.kind, b.stanza ?? '-', b.stats.files, humanBytes(b.stats.bytes), humanBytes(b.stats.storedBytes), `${b.hostname}:${b.source}`].join('\t'));
    });

  program
    .command('restore [backup]')
    .description('restore a backup (id, id prefix, label or "latest"; with a PostgreSQL target and no id, the newest backup before it)')
    .requiredOption('--to <dir>', 'target directory (empty or absent, unless --delta)')
    .option('--delta', 'restore over existing content: keep chunks in place, write only what differs, remove the rest')
    .option('--target-time <time>', 'PostgreSQL: recover up to this time')
    .option('--target-lsn <lsn>', 'PostgreSQL: recover up to this LSN')
    .option('--target-xid <xid>', 'PostgreSQL: recover up to this transaction')
    .option('--target-name <name>', 'PostgreSQL: recover up to this restore point')
    .addOption(new Option('--target <immediate>', 'PostgreSQL: stop as soon as the backup is consistent').choices(['immediate']))
    .option('--target-timeline <tli>', 'PostgreSQL: latest (default), current, or a timeline number')
    .addOption(new Option('--target-action <action>', 'PostgreSQL: on reaching the target').choices(['promote', 'pause', 'shutdown']))
    .option('--target-exclusive', 'PostgreSQL: stop just before the target instead of just after')
    .option('--standby', 'PostgreSQL: write standby.signal to build a standby')
    .option('--tablespace-map <name=dir>', 'PostgreSQL: restore a tablespace (by name or OID) into DIR instead of its original location (repeatable)', (v: string, prev: string[]) => [...prev, v], [] as string[])
    .option('--link-map <path=dir>', 'PostgreSQL: restore the data directory\'s link PATH (e.g. pg_wal) as a link to DIR; unmapped links become directories inside the target (repeatable)', (v: string, prev: string[]) => [...prev, v], [] as string[])
    .option('--archive', 'PostgreSQL: keep archive_mode as backed up (for a restore that replaces the original); by default the restored cluster does not archive')
    .option('--restore-command <cmd>', 'PostgreSQL: restore_command to write (default: this coffer, same repository and stanza, wal-fetch %f %p)')
    .option('--concurrency <n>', 'pack requests in flight', intOption('--concurrency', 1, 256))
    .option('--json', 'print the result as JSON')
    .action(async (selector: string | undefined, o: RestoreCliOptions) => {
      const repo = await openRepo();
      const target = {
        ...(o.targetTime !== undefined ? { time: o.targetTime } : {}),
        ...(o.targetLsn !== undefined ? { lsn: o.targetLsn } : {}),
        ...(o.targetXid !== undefined ? { xid: o.targetXid } : {}),
        ...(o.targetName !== undefined ? { name: o.targetName } : {}),
        ...(o.target === 'immediate' ? { immediate: true } : {}),
        ...(o.targetTimeline !== undefined ? { timeline: o.targetTimeline } : {}),
        ...(o.targetAction !== undefined ? { action: o.targetAction } : {}),
        ...(o.targetExclusive ? { inclusive: false } : {}),
      };
      const pgWanted = Object.keys(target).length > 0 || !!o.standby || !!o.restoreCommand || o.tablespaceMap.length > 0 || o.linkMap.length > 0 || !!o.archive;
      const stanzaName = stanzaOf(globals(), io.env);
      const key = await backupToRestore(repo, selector, { target, stanza: stanzaName, postgres: pgWanted });
      const kind = (await repo.readManifest(key)).kind;
      if (kind !== 'postgres' && pgWanted) throw new InvalidArgumentError('restore', `${key} is a ${kind} backup: PostgreSQL options do not apply`);
      const bar = progressBar('restore', io.stderr, !globals().quiet && !o.json);
      const t0 = performance.now();
      const common = {
        ...(o.concurrency ? { concurrency: o.concurrency } : {}),
        ...(o.delta ? { delta: true } : {}),
        onProgress: (p: RestoreProgress) => bar.update(p.bytesDone, p.bytesTotal, `${p.filesDone}/${p.filesTotal} files`),
      };
      let r;
      try {
        r =
          kind === 'postgres'
            ? await restorePostgres(repo, key, o.to, {
                ...common,
                target,
                ...(o.standby ? { standby: true } : {}),
                ...(o.archive ? { archive: true } : {}),
                stanza: stanzaName,
                tablespaceMap: parseDirMap('--tablespace-map', o.tablespaceMap),
                linkMap: parseDirMap('--link-map', o.linkMap),
                restoreCommand: o.restoreCommand ?? ((scope: RestoreCommandScope) => defaultRestoreCommand(globals(), io.env, repo.config.repositoryId, scope)),
              })
            : await restoreBackup(repo, key, o.to, common);
      } finally {
        bar.stop();
      }
      const seconds = (performance.now() - t0) / 1000;
      if (o.json) return say(JSON.stringify({ key: r.key, files: r.files, bytes: r.bytes, bytesWritten: r.bytesWritten, requests: r.requests, bytesFetched: r.bytesFetched, seconds }, null, 2));
      say(`restored ${r.key} to ${o.to}: ${r.files} files, ${humanBytes(r.bytes)} (${humanBytes(r.bytesWritten)} written) in ${seconds.toFixed(2)} s (${r.requests} requests, ${humanBytes(r.bytesFetched)} fetched)`);
      if (kind === 'postgres') say(`recovery settings written to ${o.to}/postgresql.auto.conf; start the server to recover`);
    });

  program
    .command('check')
    .description('verify that every referenced object exists; with --read-data, decrypt and verify every chunk')
    .option('--read-data', 'read and verify all pack data')
    .option('--json', 'print the report as JSON')
    .action(async (o: { readData?: boolean; json?: boolean }) => {
      const repo = await openRepo();
      const report = await checkRepository(repo, { readData: !!o.readData });
      if (o.json) say(JSON.stringify({ ...report, problems: report.problems.map((p) => ({ code: p.code, message: p.message, key: (p as { key?: string }).key })) }, null, 2));
      else printCheck(report, say);
      if (!report.ok) throw pickCheckError(report);
    });

  program
    .command('drill <backup>')
    .description('restore a backup into a temporary sandbox, re-verify every restored file, and clean up')
    .option('--sandbox <dir>', 'parent directory for the sandbox')
    .option('--json', 'print the report as JSON')
    .action(async (selector: string, o: { sandbox?: string; json?: boolean }) => {
      const repo = await openRepo();
      const { drillRestore } = await import('@coffer/verify');
      const report = await drillRestore(repo, selector, o.sandbox ? { sandboxParent: o.sandbox } : {});
      if (o.json) say(JSON.stringify(report, null, 2));
      else say(`drill ${report.ok ? 'passed' : 'FAILED'}: ${report.backup}: ${report.files} files, ${humanBytes(report.bytes)}, restore ${report.restoreSeconds.toFixed(2)} s, re-verify ${report.verifySeconds.toFixed(2)} s${report.mismatches.length ? `; mismatched: ${report.mismatches.join(', ')}` : ''}`);
      if (!report.ok) throw new CorruptObjectError(report.backup, `restored content differs from the manifest`, report.mismatches);
    });

  const key = program.command('key').description("manage the keys that open the repository's data keys");

  key
    .command('list')
    .description('data keys and the providers that wrap each (no key material)')
    .option('--json', 'print as JSON')
    .action(async (o: { json?: boolean }) => {
      const repo = await openRepo();
      const rows = repo.keyRecords.map((r) => ({ id: r.id, current: r.id === repo.keys.currentKeyId, open: repo.keys.dataKeys.has(r.id), wrappedBy: r.wrappings.map((w) => `${w.provider}/${w.keyRef}`) }));
      if (o.json) return say(JSON.stringify(rows, null, 2));
      for (const r of rows) say(`data key ${r.id}${r.current ? ' (current)' : ''}${r.open ? '' : ' (not opened by the given keys)'}: ${r.wrappedBy.join(', ')}`);
    });

  key
    .command('add')
    .description('wrap every data key with another key too (another region\'s KMS key, or a key file), so it alone opens the repository')
    .option('--kms-key-id <id>', 'the AWS KMS key to add (the repository opens with COFFER_KMS_KEY_ID or any KMS key that wraps it)')
    .option('--new-key-file <file>', 'a local key file to add')
    .action(async (o: { kmsKeyId?: string; newKeyFile?: string }) => {
      // `--kms-key-id` after `key add` names the key to add; commander hands it to the global option of the same name.
      const adding = o.kmsKeyId ?? globals().kmsKeyId;
      if (!adding === !o.newKeyFile) throw new InvalidArgumentError('key add', 'pass exactly one of --kms-key-id or --new-key-file');
      const repo = await openRepoAt(await openStore(globals(), io.env), { ...globals(), kmsKeyId: undefined });
      const provider: KeyProvider = adding ? kmsProvider(adding, io.env) : await LocalKeyProvider.fromKeyFile(o.newKeyFile!);
      const added = await repo.addKeyWrapping(provider);
      say(added ? `wrapped data key(s) ${added.keyIds.join(', ')} with ${adding ?? o.newKeyFile} (${added.key})` : `${adding ?? o.newKeyFile} already wraps every data key`);
    });

  key
    .command('rotate')
    .description('start a new data key for new writes, wrapped by every key that wraps the current one; old keys stay for reading, no data is rewritten')
    .action(async () => {
      const repo = await openRepo();
      const current = repo.keyRecords.find((r) => r.id === repo.keys.currentKeyId)!;
      const local = await localProvider(globals(), io.env);
      const providers: KeyProvider[] = [];
      const unreachable: string[] = [];
      for (const w of current.wrappings) {
        if (w.provider === KMS_PROVIDER) providers.push(kmsProvider(w.keyRef, io.env));
        else if (local?.canUnwrap(w)) providers.push(local);
        else unreachable.push(`${w.provider}/${w.keyRef}`);
      }
      // Rotating without one of the current wrappers would lock that holder out of new data.
      if (unreachable.length > 0) throw new InvalidArgumentError('key rotate', `the current data key is also wrapped by ${unreachable.join(', ')}; give that key too (COFFER_PASSPHRASE or --key-file) so the new data key is wrapped for it`);
      const rotated = await repo.rotateDataKey(providers);
      say(`data key ${rotated.keyId} is now current, wrapped by ${current.wrappings.map((w) => `${w.provider}/${w.keyRef}`).join(', ')} (${rotated.key})`);
    });

  program
    .command('mirror')
    .description('copy every object the destination lacks (packs, indexes, key records, manifests, WAL, config), each checked against its SHA-256; resumable')
    .requiredOption('--to <path|url>', 'destination repository: a path, file:// URL or s3://bucket/prefix')
    .option('--concurrency <n>', 'objects in flight', intOption('--concurrency', 1, 256))
    .option('--json', 'print the report as JSON')
    .action(async (o: { to: string; concurrency?: number; json?: boolean }) => {
      const from = await openStore(globals(), io.env);
      const to = await storeAt(absoluteLocation(o.to), globals(), io.env);
      const t0 = performance.now();
      const report = await mirror(from, to, o.concurrency ? { concurrency: o.concurrency } : {});
      const seconds = (performance.now() - t0) / 1000;
      if (o.json) say(JSON.stringify({ ...report, seconds, problems: report.problems.map((p) => ({ code: p.code, message: p.message })) }, null, 2));
      else printMirror(report, from.properties.location, to.properties.location, seconds, say);
      if (!report.ok) throw report.problems[0]!;
    });

  program
    .command('key-file')
    .description('print 32 random bytes, base64 — the content of a new key file (redirect it somewhere safe)')
    .action(() => {
      io.stdout.write(LocalKeyProvider.newKeyFileContent());
    });

  return program;
}

function printMirror(r: MirrorReport, from: string, to: string, seconds: number, say: (s: string) => void): void {
  const parts = Object.entries(r.copiedByPrefix).map(([p, n]) => `${n} ${p.replace(/\/$/, '')}`);
  say(`mirrored ${from} → ${to}: copied ${r.copied} objects (${humanBytes(r.bytesCopied)})${parts.length ? ` [${parts.join(', ')}]` : ''}, ${r.present} already there, in ${seconds.toFixed(2)} s`);
  for (const p of r.problems) say(`  ${p.code}: ${p.message}`);
}

function printCheck(r: CheckReport, say: (s: string) => void): void {
  say(`${r.backups} backups, ${r.indexes} indexes, ${r.packs} packs, ${r.chunksReferenced} chunks referenced${r.chunksVerified ? `, ${r.chunksVerified} chunks verified` : ''}`);
  if (r.unindexedPacks) say(`${r.unindexedPacks} pack(s) not indexed (left by an interrupted backup; reclaimed by garbage collection)`);
  say(r.ok ? 'no problems found' : `${r.problems.length} problem(s):`);
  for (const p of r.problems) say(`  ${p.code}: ${p.message}`);
}

/** The most serious problem decides the exit status: corruption, then missing objects. */
function pickCheckError(r: CheckReport): CofferError {
  return r.problems.find((p) => p instanceof CorruptObjectError) ?? r.problems.find((p) => p instanceof MissingObjectError) ?? r.problems[0]!;
}

/** Runs the CLI; resolves to the process exit status. */
export async function runCli(argv: readonly string[], io: CliIo): Promise<number> {
  const program = buildProgram(io);
  try {
    await program.parseAsync([...argv], { from: 'user' });
    return 0;
  } catch (e) {
    if (e instanceof CommandExit) {
      if (e.reason) io.stderr.write(`coffer: ${e.reason}\n`);
      return e.status;
    }
    if (e instanceof CommanderError) return e.exitCode === 0 ? 0 : EXIT_USAGE;
    if (e instanceof CofferError) {
      io.stderr.write(`coffer: ${e.message}\n`);
      return EXIT_CODES[e.code] ?? EXIT_INTERNAL;
    }
    io.stderr.write(`coffer: unexpected error: ${(e as Error)?.stack ?? String(e)}\n`);
    return EXIT_INTERNAL;
  }
}
