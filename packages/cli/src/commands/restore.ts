/** `coffer restore`: a files backup into a directory, or a PostgreSQL backup ready to recover. */
import { resolve } from 'node:path';
import { Option } from 'commander';
import { backupToRestore, restorePostgres, InvalidArgumentError, restoreBackup, displayPath, type RestoreCommandScope, type RestoreProgress } from '@coffer/engine';
import { defaultRestoreCommand, dirMapOption, intOption, leaseOptions, parseDirMap, stanzaOf, type CliContext } from '../context.js';
import { humanBytes, progressBar } from '../progress.js';

interface RestoreCliOptions {
  to: string;
  delta?: boolean;
  force?: boolean;
  dryRun?: boolean;
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

export function register(ctx: CliContext): void {
  const { program, io, globals, openRepo, say, audit } = ctx;
  program
    .command('restore [backup]')
    .description('restore a backup (an id or any unique start of one, a label, a tag, or "latest"; with a PostgreSQL target and no id, the newest backup before it)')
    .requiredOption('--to <dir>', 'target directory (empty or absent, unless --delta)')
    .option('--delta', 'restore over existing content: keep chunks in place, write only what differs, remove the rest (only over an earlier restore of the same source, or the stanza\'s own data directory, unless --force)')
    .option('--force', 'with --delta: restore over a directory that holds no mark of an earlier restore')
    .option('--dry-run', 'check the target and list what a --delta restore would remove, changing nothing')
    .option('--target-time <time>', 'PostgreSQL: recover up to this time')
    .option('--target-lsn <lsn>', 'PostgreSQL: recover up to this LSN')
    .option('--target-xid <xid>', 'PostgreSQL: recover up to this transaction')
    .option('--target-name <name>', 'PostgreSQL: recover up to this restore point')
    .addOption(new Option('--target <immediate>', 'PostgreSQL: stop as soon as the backup is consistent').choices(['immediate']))
    .option('--target-timeline <tli>', 'PostgreSQL: latest (default), current, or a timeline number')
    .addOption(new Option('--target-action <action>', 'PostgreSQL: on reaching the target').choices(['promote', 'pause', 'shutdown']))
    .option('--target-exclusive', 'PostgreSQL: stop just before the target instead of just after')
    .option('--standby', 'PostgreSQL: write standby.signal to build a standby')
    .option('--tablespace-map <name=dir>', 'PostgreSQL: restore a tablespace (by name or OID) into DIR instead of its original location (repeatable)', dirMapOption('--tablespace-map'), [] as string[])
    .option('--link-map <path=dir>', 'PostgreSQL: restore the data directory\'s link PATH (e.g. pg_wal) as a link to DIR; unmapped links become directories inside the target (repeatable)', dirMapOption('--link-map'), [] as string[])
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
      const kind = (await repo.backupSummary(key)).kind;
      if (kind !== 'postgres' && pgWanted) throw new InvalidArgumentError('restore', `${key} is a ${kind} backup: PostgreSQL options do not apply`);
      const bar = progressBar('restore', io.stderr, !globals().quiet && !o.json);
      const t0 = performance.now();
      const common = {
        ...leaseOptions(globals(), io.env),
        ...(o.concurrency ? { concurrency: o.concurrency } : {}),
        ...(o.delta ? { delta: true } : {}),
        ...(o.force ? { force: true } : {}),
        ...(o.dryRun ? { dryRun: true } : {}),
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
      audit({ backup: key.slice(8, -65), id: key.slice(-64, -52), to: resolve(o.to), files: r.files, bytes: r.bytes });
      // What did not stop the restore but did not come back as backed up (an extended attribute this user may not set).
      for (const w of r.warnings) io.stderr.write(`coffer: warning: ${w}\n`);
      if (o.json) return say(JSON.stringify({ key: r.key, files: r.files, bytes: r.bytes, bytesWritten: r.bytesWritten, requests: r.requests, bytesFetched: r.bytesFetched, seconds, warnings: r.warnings, removed: r.removed, ...(r.dryRun ? { dryRun: true } : {}) }, null, 2));
      if (r.dryRun) {
        for (const p of r.removed) say(`would remove ${displayPath(p)}`);
        return say(`dry run: restoring ${r.key} to ${o.to} would write ${r.files} files, ${humanBytes(r.bytes)}, and remove ${entries(r.removed.length)} the backup does not hold; nothing was changed`);
      }
      if (r.removed.length > 0) say(`removed ${entries(r.removed.length)} from ${o.to} that the backup does not hold`);
      say(`restored ${r.key} to ${o.to}: ${r.files} files, ${humanBytes(r.bytes)} (${humanBytes(r.bytesWritten)} written) in ${seconds.toFixed(2)} s (${r.requests} requests, ${humanBytes(r.bytesFetched)} fetched)`);
      if (kind === 'postgres') say(`recovery settings written to ${o.to}/postgresql.auto.conf; start the server to recover`);
    });
}

function entries(n: number): string {
  return `${n} ${n === 1 ? 'entry' : 'entries'}`;
}
