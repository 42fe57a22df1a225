/** `coffer expire`: apply retention tiers and the PITR window; remove what they do not keep (gc then frees the space). */
import type { Command } from 'commander';
import { expire, lockSpan, parseTargetTime, type ExpireReport, type LockedObject, type RetentionPolicy } from '@coffer/engine';
import { daysOption, intOption, type CliContext } from '../context.js';

export interface RetentionFlags {
  keepMin?: number;
  keepHot?: number;
  keepWarm?: number;
  keepCold?: number;
  coldEvery?: 'week' | 'month';
  pitrWindow?: number;
}

export function policyOf(o: RetentionFlags): RetentionPolicy {
  return {
    ...(o.keepMin !== undefined ? { minCount: o.keepMin } : {}),
    ...(o.keepHot !== undefined ? { hotDays: o.keepHot } : {}),
    ...(o.keepWarm !== undefined ? { warmDays: o.keepWarm } : {}),
    ...(o.keepCold !== undefined ? { coldMonths: o.keepCold } : {}),
    ...(o.coldEvery !== undefined ? { coldEvery: o.coldEvery } : {}),
    ...(o.pitrWindow !== undefined ? { pitrWindowDays: o.pitrWindow } : {}),
  };
}

/** The retention options `expire` and `info` share. */
export function registerRetentionOptions(command: Command): Command {
  return command
    .option('--keep-min <n>', 'always keep the newest N backups of each cluster or source (default 1)', intOption('--keep-min', 1, 1_000_000))
    .option('--keep-hot <days>', 'hot tier: keep every backup of the last DAYS days', daysOption('--keep-hot'))
    .option('--keep-warm <days>', 'warm tier: keep the newest backup of each day (UTC) of the last DAYS days', daysOption('--keep-warm'))
    .option('--keep-cold <months>', 'cold tier: keep the newest backup of each week (or month) of the last MONTHS months', intOption('--keep-cold', 0, 1200))
    .option('--cold-every <period>', "the cold tier's period: week (default) or month")
    .option('--pitr-window <days>', 'PostgreSQL: keep every point of the last DAYS days recoverable (default: the longest tier)', daysOption('--pitr-window'))
    .option('--now <time>', 'count back from this time (with a zone, e.g. 2026-12-01T00:00:00Z) instead of now: for drills and tests');
}

export function register(ctx: CliContext): void {
  const { program, openRepo, say, report: figures } = ctx;
  registerRetentionOptions(
    program
      .command('expire')
      .description('apply retention: keep backups by tier (hot, warm, cold), keep marks, the newest N and the PITR window; remove the other backups and the WAL no kept backup or point in the window needs (coffer gc frees their space)'),
  )
    .option('--dry-run', 'print what would be kept and removed, and why; remove nothing')
    .option('--json', 'print the report as JSON')
    .action(async (o: RetentionFlags & { now?: string; dryRun?: boolean; json?: boolean }) => {
      const policy = policyOf(o);
      const now = o.now !== undefined ? new Date(parseTargetTime(o.now, '--now')) : undefined;
      const repo = await openRepo();
      const report = await expire(repo, policy, { ...(now ? { now } : {}), ...(o.dryRun ? { dryRun: true } : {}) });
      if (!o.dryRun) figures({ expire_removed_backups: report.removedBackups });
      if (o.json) return say(JSON.stringify(report, null, 2));
      for (const line of describeExpire(report)) say(line);
    });
}

export function describeExpire(report: ExpireReport): string[] {
  const lines: string[] = [];
  for (const b of report.backups) lines.push(`backup ${b.id} ${b.label} (${b.lineage}): ${b.keep ? 'keep' : 'EXPIRE'}: ${b.reasons.join('; ')}`);
  for (const w of report.wal) {
    const span = w.files === 1 ? w.first : `${w.first} … ${w.last}`;
    lines.push(`WAL ${w.stanza} system ${w.systemIdentifier} timeline ${w.timeline}: ${span} (${w.files} file${w.files === 1 ? '' : 's'}): ${w.keep ? 'keep' : 'EXPIRE'}: ${w.reason}`);
  }
  const expiredBackups = report.backups.filter((b) => !b.keep).length;
  const expiredWal = report.wal.filter((w) => !w.keep).reduce((n, w) => n + w.files, 0);
  lines.push(
    report.dryRun
      ? `dry run: would expire ${expiredBackups} backup(s) and ${expiredWal} WAL file(s); PITR window from ${report.pitrWindowFrom}`
      : `expired ${report.removedBackups} backup(s) and ${report.removedWalFiles} WAL file(s); PITR window from ${report.pitrWindowFrom}; run coffer gc to free their space`,
  );
  lines.push(...describeLocked(report.locked, 'a later expire removes them'));
  return lines;
}

/** Objects left in place under Object Lock retention: each, then when the last can go. */
export function describeLocked(locked: readonly LockedObject[], then: string): string[] {
  const span = lockSpan(locked);
  if (!span) return [];
  return [
    ...locked.map((l) => `under Object Lock (${l.mode}) until ${l.until}: ${l.key}`),
    `${locked.length} object(s) left in place under Object Lock retention, deletable from ${span.from} (all by ${span.to}); ${then}`,
  ];
}
