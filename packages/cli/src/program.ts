/**
 * The `coffer` command: argument parsing and output only. Every action is a
 * call into the libraries, which a service could make the same way.
 */
import { Command, CommanderError, Option } from 'commander';
import {
  backupFiles,
  checkRepository,
  CofferError,
  CorruptObjectError,
  InvalidArgumentError,
  LocalKeyProvider,
  MissingObjectError,
  Repository,
  restoreBackup,
  type CheckReport,
} from '@coffer/engine';
import { drillRestore } from '@coffer/verify';
import { EXIT_CODES, EXIT_INTERNAL, EXIT_USAGE } from './exit-codes.js';
import { humanBytes, progressBar } from './progress.js';
import { keyProviders, openStore, type RepoOptions } from './repo-options.js';

export interface CliIo {
  stdout: NodeJS.WriteStream;
  stderr: NodeJS.WriteStream;
  env: NodeJS.ProcessEnv;
}

interface GlobalOptions extends RepoOptions {
  quiet?: boolean;
}

function intOption(name: string, min: number, max: number) {
  return (value: string): number => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < min || n > max) throw new InvalidArgumentError(name, `expected an integer from ${min} to ${max}, got ${JSON.stringify(value)}`);
    return n;
  };
}

export function buildProgram(io: CliIo): Command {
  const program = new Command('coffer')
    .description('Content-addressed, deduplicating, encrypted backups')
    .addOption(new Option('--repo <path|url>', 'repository: a directory path or file:// URL (env COFFER_REPO)'))
    .addOption(new Option('--key-file <file>', 'key file instead of the COFFER_PASSPHRASE environment variable (env COFFER_KEY_FILE)'))
    .option('-q, --quiet', 'no progress display')
    .showHelpAfterError()
    .exitOverride()
    .configureOutput({ writeOut: (s) => io.stdout.write(s), writeErr: (s) => io.stderr.write(s) });

  const globals = (): GlobalOptions => program.opts<GlobalOptions>();
  const openRepo = async () => Repository.open(openStore(globals(), io.env), await keyProviders(globals(), io.env));
  const say = (s: string): void => {
    io.stdout.write(s + '\n');
  };

  program
    .command('init')
    .description('create a repository (the passphrase or key file given becomes its first key)')
    .option('--chunk-min <bytes>', 'FastCDC minimum chunk size', intOption('--chunk-min', 64, 64 << 20))
    .option('--chunk-avg <bytes>', 'FastCDC average chunk size', intOption('--chunk-avg', 256, 64 << 20))
    .option('--chunk-max <bytes>', 'FastCDC maximum chunk size', intOption('--chunk-max', 1024, 64 << 20))
    .option('--pack-size <bytes>', 'target pack size', intOption('--pack-size', 64 << 10, 1 << 30))
    .option('--compression-level <n>', 'zstd level 1–19', intOption('--compression-level', 1, 19))
    .action(async (o: { chunkMin?: number; chunkAvg?: number; chunkMax?: number; packSize?: number; compressionLevel?: number }) => {
      const store = openStore(globals(), io.env);
      const [provider] = await keyProviders(globals(), io.env);
      const chunker = { ...(o.chunkMin ? { minSize: o.chunkMin } : {}), ...(o.chunkAvg ? { avgSize: o.chunkAvg } : {}), ...(o.chunkMax ? { maxSize: o.chunkMax } : {}) };
      const repo = await Repository.init(store, provider!, { chunker, ...(o.packSize ? { packSize: o.packSize } : {}), ...(o.compressionLevel ? { compressionLevel: o.compressionLevel } : {}) });
      say(`initialised repository ${repo.config.repositoryId} at ${repo.location}`);
    });

  program
    .command('backup')
    .description('back up a directory tree')
    .requiredOption('--path <dir>', 'directory to back up')
    .option('--tag <tag>', 'label the backup (repeatable)', (v: string, prev: string[]) => [...prev, v], [] as string[])
    .option('--parent <id>', 'compare against this backup instead of the latest of the same path ("none" to read everything)')
    .option('--workers <n>', 'chunking threads (0 = none; default: one per core for large inputs)', intOption('--workers', 0, 64))
    .option('--json', 'print the result as JSON')
    .action(async (o: { path: string; tag: string[]; parent?: string; workers?: number; json?: boolean }) => {
      const repo = await openRepo();
      const bar = progressBar('backup ', io.stderr, !globals().quiet && !o.json);
      const t0 = performance.now();
      let result;
      try {
        result = await backupFiles(repo, o.path, {
          tags: o.tag,
          ...(o.parent ? { parent: o.parent } : {}),
          ...(o.workers !== undefined ? { workers: o.workers } : {}),
          onProgress: (p) => bar.update(p.bytesDone, p.bytesTotal, `${p.filesDone}/${p.filesTotal} files, ${humanBytes(p.newBytes)} new`),
        });
      } finally {
        bar.stop();
      }
      const seconds = (performance.now() - t0) / 1000;
      const s = result.manifest.stats;
      const id = result.key.slice(-64, -52);
      if (o.json) return say(JSON.stringify({ id, key: result.key, seconds, stats: s }, null, 2));
      say(`backup ${id} (${result.manifest.label})`);
      say(`  ${s.files} files, ${s.dirs} dirs, ${s.symlinks} symlinks, ${humanBytes(s.bytes)} (${s.unchangedFiles} files unchanged)`);
      say(`  new: ${s.newChunks} chunks, ${humanBytes(s.newBytes)} → ${humanBytes(s.storedBytes)} stored, in ${seconds.toFixed(2)} s`);
      if (s.skipped.length) say(`  skipped ${s.skipped.length}: ${s.skipped.slice(0, 10).join(', ')}${s.skipped.length > 10 ? ', …' : ''}`);
    });

  program
    .command('list')
    .description('list backups, oldest first')
    .option('--json', 'print as JSON')
    .action(async (o: { json?: boolean }) => {
      const repo = await openRepo();
      const backups = await repo.listBackups();
      if (o.json) return say(JSON.stringify(backups.map(({ stats, ...b }) => ({ ...b, files: stats.files, bytes: stats.bytes, newBytes: stats.newBytes, storedBytes: stats.storedBytes })), null, 2));
      if (backups.length === 0) return say('no backups');
      say(['ID', 'STARTED', 'KIND', 'FILES', 'SIZE', 'ADDED', 'SOURCE'].join('\t'));
      for (const b of backups) say([b.id, b.startedAt, b.kind, b.stats.files, humanBytes(b.stats.bytes), humanBytes(b.stats.storedBytes), `${b.hostname}:${b.source}`].join('\t'));
    });

  program
    .command('restore <backup>')
    .description('restore a backup (id, unique id prefix, label, or "latest") into an empty or new directory')
    .requiredOption('--to <dir>', 'target directory (must be empty or absent)')
    .option('--concurrency <n>', 'pack requests in flight', intOption('--concurrency', 1, 256))
    .option('--json', 'print the result as JSON')
    .action(async (selector: string, o: { to: string; concurrency?: number; json?: boolean }) => {
      const repo = await openRepo();
      const bar = progressBar('restore', io.stderr, !globals().quiet && !o.json);
      const t0 = performance.now();
      let r;
      try {
        r = await restoreBackup(repo, selector, o.to, {
          ...(o.concurrency ? { concurrency: o.concurrency } : {}),
          onProgress: (p) => bar.update(p.bytesDone, p.bytesTotal, `${p.filesDone}/${p.filesTotal} files`),
        });
      } finally {
        bar.stop();
      }
      const seconds = (performance.now() - t0) / 1000;
      if (o.json) return say(JSON.stringify({ key: r.key, files: r.files, bytes: r.bytes, requests: r.requests, bytesFetched: r.bytesFetched, seconds }, null, 2));
      say(`restored ${r.key} to ${o.to}: ${r.files} files, ${humanBytes(r.bytes)} in ${seconds.toFixed(2)} s (${r.requests} requests, ${humanBytes(r.bytesFetched)} fetched)`);
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
      const report = await drillRestore(repo, selector, o.sandbox ? { sandboxParent: o.sandbox } : {});
      if (o.json) say(JSON.stringify(report, null, 2));
      else say(`drill ${report.ok ? 'passed' : 'FAILED'}: ${report.backup}: ${report.files} files, ${humanBytes(report.bytes)}, restore ${report.restoreSeconds.toFixed(2)} s, re-verify ${report.verifySeconds.toFixed(2)} s${report.mismatches.length ? `; mismatched: ${report.mismatches.join(', ')}` : ''}`);
      if (!report.ok) throw new CorruptObjectError(report.backup, `restored content differs from the manifest`, report.mismatches);
    });

  program
    .command('key-file')
    .description('print 32 random bytes, base64 — the content of a new key file (redirect it somewhere safe)')
    .action(() => {
      io.stdout.write(LocalKeyProvider.newKeyFileContent());
    });

  return program;
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
    if (e instanceof CommanderError) return e.exitCode === 0 ? 0 : EXIT_USAGE;
    if (e instanceof CofferError) {
      io.stderr.write(`coffer: ${e.message}\n`);
      return EXIT_CODES[e.code] ?? EXIT_INTERNAL;
    }
    io.stderr.write(`coffer: unexpected error: ${(e as Error)?.stack ?? String(e)}\n`);
    return EXIT_INTERNAL;
  }
}
