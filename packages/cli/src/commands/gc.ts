/** `coffer gc`: delete packs nothing references, repack mostly dead ones, consolidate the index — beside running backups. */
import { collectGarbage, DEFAULT_REPACK_DEAD_SHARE, type GcReport } from '@coffer/engine';
import { describeLocked } from './expire.js';
import { intOption, leaseOptions, type CliContext } from '../context.js';
import { humanBytes } from '../progress.js';

export function register(ctx: CliContext): void {
  const { program, io, globals, openRepo, say, report: figures } = ctx;
  program
    .command('gc')
    .description('garbage collection: delete packs no backup or WAL file references, repack packs that are mostly dead, consolidate the index; safe beside backups, WAL archiving and restores (it waits for those that started before it)')
    .option('--repack-dead <percent>', `repack packs more than PERCENT dead (default ${DEFAULT_REPACK_DEAD_SHARE * 100}; 100: never repack)`, intOption('--repack-dead', 0, 100))
    .option('--memory <MiB>', 'memory for the set of live chunks (a filter; default 48): more means fewer dead chunks kept by chance in mostly live packs', intOption('--memory', 1, 65536))
    .option('--max-wait <seconds>', 'longest wait for writers that were running, or for another gc (default 3600)', intOption('--max-wait', 0, 7 * 86400))
    .option('--dry-run', 'report what would be deleted and repacked; change nothing')
    .option('--json', 'print the report as JSON')
    .action(async (o: { repackDead?: number; memory?: number; maxWait?: number; dryRun?: boolean; json?: boolean }) => {
      const repo = await openRepo();
      const progress = globals().quiet || o.json ? undefined : (m: string) => io.stderr.write(`coffer: ${m}\n`);
      const lease = leaseOptions(globals(), io.env);
      const report = await collectGarbage(repo, {
        ...(o.repackDead !== undefined ? { repackDeadShare: o.repackDead / 100 } : {}),
        ...(o.memory !== undefined ? { filterBytes: o.memory * 1024 * 1024 } : {}),
        ...(o.maxWait !== undefined ? { maxWaitMs: o.maxWait * 1000 } : {}),
        ...(lease.leaseTtlMs !== undefined ? { leaseTtlMs: lease.leaseTtlMs } : {}),
        ...(o.dryRun ? { dryRun: true } : {}),
        ...(progress ? { onProgress: progress } : {}),
      });
      if (!o.dryRun) figures({ gc_deleted_bytes: report.deletedBytes });
      if (o.json) return say(JSON.stringify(report, null, 2));
      for (const line of describeGc(report)) say(line);
    });
}

export function describeGc(r: GcReport): string[] {
  const verb = r.dryRun ? 'would delete' : 'deleted';
  return [
    `${r.packs} packs, ${humanBytes(r.packBytes)}: ${verb} ${r.deletedPacks} (${humanBytes(r.deletedBytes)}), ${r.dryRun ? 'would repack' : 'repacked'} ${r.repackedPacks} (${humanBytes(r.repackReadBytes)} read, ${humanBytes(r.repackWrittenBytes)} written)${r.sparedPacks ? `, spared ${r.sparedPacks} that work committed meanwhile may use` : ''}`,
    `index: ${r.indexObjectsBefore} objects → ${r.indexObjectsAfter} (${r.indexObjectsRewritten} rewritten)`,
    `${r.waitedFor.length ? `waited for ${r.waitedFor.length} lease(s); ` : ''}removed ${r.removedLeaseObjects} ended lease object(s); live-chunk filter ${humanBytes(r.filterBytes)}, ${(r.falsePositiveRate * 100).toFixed(2)}% of dead chunks kept by chance; ${r.seconds.toFixed(2)} s`,
    ...describeLocked(r.locked, 'a later gc deletes them'),
    ...(r.retentionExtended ? [`Object Lock retention extended on ${r.retentionExtended} live object(s)`] : []),
  ];
}
