/** `coffer backup`: a PostgreSQL base backup (the PG* environment or --db) or a directory tree (--path). */
import { readFile } from 'node:fs/promises';
import { backupFiles, backupPostgres, displayPath, parseByteRate, parseExcludeFile, InvalidArgumentError, type BackupProgress } from '@coffer/engine';
import { CommandExit, intOption, leaseOptions, listOption, stanzaOf, type CliContext } from '../context.js';
import { EXIT_DAMAGED_PAGES, EXIT_FILES_CHANGED } from '../exit-codes.js';
import { humanBytes, progressBar } from '../progress.js';

export function register(ctx: CliContext): void {
  const { program, io, globals, openRepo, say, report, audit, auditAnchor } = ctx;
  program
    .command('backup')
    .description('back up PostgreSQL (connects with the PG* environment or --db), or a directory tree with --path')
    .option('--path <dir>', 'back up this directory tree instead of a PostgreSQL cluster')
    .option('--db <connstring>', 'libpq connection string (default: PGHOST, PGPORT, PGUSER, PGDATABASE, PGPASSWORD)')
    .option('--pgdata <dir>', "the cluster's data directory as seen here (default: the server's data_directory)")
    .option('--tag <tag>', 'label the backup (repeatable); restore, drill and --parent accept a tag for the newest backup carrying it', listOption('--tag', 'name'), [] as string[])
    .option('--parent <id>', 'compare against this backup instead of the latest of the same source ("none" to read everything)')
    .option('--workers <n>', 'chunking threads (0 = none; default: one per core for large inputs)', intOption('--workers', 0, 64))
    .option('--no-archive-check', 'PostgreSQL: commit the backup without confirming its WAL is in this repository (it then needs WAL from elsewhere)')
    .option('--archive-timeout <seconds>', 'PostgreSQL: how long to wait for the backup\'s WAL to reach this repository (default 60)', intOption('--archive-timeout', 1, 86400))
    .option('--primary-db <connstring>', 'PostgreSQL, backing up a standby: the primary, asked to switch WAL segments so the backup\'s last segment is archived')
    .option('--max-rate <rate>', 'read the source at most this fast, all threads together, e.g. 200MB or 1GiB (per second): the server\'s disks stay the application\'s (env COFFER_MAX_RATE)')
    .option('--exclude <pattern>', 'files backups: leave out what matches (`*`, `**`, `?`; without `/` a name at any depth; repeatable)', listOption('--exclude', 'path'), [] as string[])
    .option('--exclude-file <file>', 'files backups: exclusion patterns, one a line (# comments)')
    .option('--json', 'print the result as JSON')
    .action(async (o: { path?: string; db?: string; pgdata?: string; tag: string[]; parent?: string; workers?: number; archiveCheck: boolean; archiveTimeout?: number; primaryDb?: string; maxRate?: string; exclude: string[]; excludeFile?: string; json?: boolean }) => {
      if (o.path && (o.db || o.pgdata || o.primaryDb)) throw new InvalidArgumentError('--path', 'a files backup takes no --db, --pgdata or --primary-db');
      if (!o.path && (o.exclude.length > 0 || o.excludeFile)) throw new InvalidArgumentError('--exclude', 'a PostgreSQL backup leaves out what PostgreSQL documents; --exclude is for --path');
      const exclude = [...o.exclude, ...(o.excludeFile ? parseExcludeFile(await readFile(o.excludeFile, 'utf8').catch((e: NodeJS.ErrnoException) => {
        throw new InvalidArgumentError('--exclude-file', `${o.excludeFile}: ${e.code ?? e.message}`);
      })) : [])];
      const rate = o.maxRate ?? io.env.COFFER_MAX_RATE;
      const maxBytesPerSecond = rate === undefined || rate === '' ? undefined : parseByteRate(rate);
      if (rate && maxBytesPerSecond === undefined) throw new InvalidArgumentError('--max-rate', `expected bytes per second such as 200MB, 1.5GiB or 500KB, got ${JSON.stringify(rate)}`);
      const repo = await openRepo();
      const bar = progressBar('backup ', io.stderr, !globals().quiet && !o.json);
      const t0 = performance.now();
      const common = {
        ...leaseOptions(globals(), io.env),
        tags: o.tag,
        ...(o.parent ? { parent: o.parent } : {}),
        ...(o.workers !== undefined ? { workers: o.workers } : {}),
        ...(maxBytesPerSecond !== undefined ? { maxBytesPerSecond } : {}),
        audit: auditAnchor(),
        onProgress: (p: BackupProgress) => bar.update(p.bytesDone, p.bytesTotal, `${p.filesDone}/${p.filesTotal} files, ${humanBytes(p.newBytes)} new`),
      };
      let result;
      try {
        result = o.path
          ? await backupFiles(repo, o.path, { ...common, exclude })
          : await backupPostgres(repo, {
              ...common,
              stanza: stanzaOf(globals(), io.env),
              archiveCheck: o.archiveCheck,
              ...(o.archiveTimeout ? { archiveTimeoutMs: o.archiveTimeout * 1000 } : {}),
              ...(o.primaryDb ? { primaryConnectionString: o.primaryDb } : {}),
              // The primary's own password, when the policy gives one apart from the standby's (never on the command line).
              ...(io.env.COFFER_PRIMARY_PGPASSWORD ? { primaryPassword: io.env.COFFER_PRIMARY_PGPASSWORD } : {}),
              ...(o.db ? { connectionString: o.db } : {}),
              ...(o.pgdata ? { pgdata: o.pgdata } : {}),
            });
      } finally {
        bar.stop();
      }
      const seconds = (performance.now() - t0) / 1000;
      const s = result.manifest.stats;
      audit({ backup: result.manifest.label, id: result.key.slice(-64, -52), kind: result.manifest.kind, source: result.manifest.source });
      report({ backup_bytes: s.bytes, backup_new_bytes: s.newBytes, backup_stored_bytes: s.storedBytes, backup_files: s.files, backup_damaged_pages: s.damagedBlocks ?? 0 });
      const id = result.key.slice(-64, -52);
      const pg = result.manifest.postgres;
      if (o.json) say(JSON.stringify({ id, key: result.key, seconds, stats: s, ...(pg ? { postgres: { ...pg, backupLabel: undefined, tablespaceMap: undefined } } : {}) }, null, 2));
      else {
        say(`backup ${id} (${result.manifest.label})`);
        if (pg) say(`  PostgreSQL ${pg.versionNum}, stanza ${result.manifest.stanza}, timeline ${pg.timeline}, ${pg.startLsn} → ${pg.stopLsn}${pg.standby ? ', from a standby' : ''}${pg.dataChecksums ? ', pages verified' : ''}${pg.archiveChecked === false ? ', WAL NOT confirmed in this repository (--no-archive-check)' : ', WAL archived here'}`);
        say(`  ${s.files} files, ${s.dirs} dirs, ${s.symlinks} symlinks, ${humanBytes(s.bytes)} (${s.unchangedFiles} files unchanged)`);
        say(`  new: ${s.newChunks} chunks, ${humanBytes(s.newBytes)} → ${humanBytes(s.storedBytes)} stored, in ${seconds.toFixed(2)} s`);
        if (s.skipped.length) say(`  skipped ${s.skipped.length}: ${s.skipped.slice(0, 10).map(displayPath).join(', ')}${s.skipped.length > 10 ? ', …' : ''}`);
      }
      // Committed, but not every file is what it was at one moment: say so, with a status of its own.
      if (s.changed?.length) {
        io.stderr.write(`coffer: warning: ${s.changed.length} file(s) changed while they were read, stored as last read: ${s.changed.slice(0, 10).map(displayPath).join(', ')}${s.changed.length > 10 ? ', …' : ''}\n`);
        throw new CommandExit(EXIT_FILES_CHANGED);
      }
      // Committed, and the cluster is damaged: every bad page is named (the manifest lists them per file), with a status of its own.
      if (s.damaged?.length) {
        const byFile = result.manifest.entries.filter((e) => e.damagedBlocks).map((e) => `${displayPath(e.path)} block${e.damagedBlocks!.length === 1 ? '' : 's'} ${e.damagedBlocks!.slice(0, 20).join(', ')}${e.damagedBlocks!.length > 20 ? ', …' : ''}`);
        io.stderr.write(`coffer: warning: ${s.damagedBlocks} page(s) in ${s.damaged.length} file(s) failed their checksum twice and were stored as read; the backup completed, the cluster is damaged: ${byFile.slice(0, 10).join('; ')}${byFile.length > 10 ? '; …' : ''}\n`);
        throw new CommandExit(EXIT_DAMAGED_PAGES);
      }
    });
}
