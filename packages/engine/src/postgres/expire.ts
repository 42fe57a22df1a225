/**
 * `expire`: applies a retention policy to every backup (files and
 * PostgreSQL) and to archived WAL, and removes what it does not keep —
 * metadata only: a backup's summary, then its manifest, then its keep
 * marks, and WAL records. The space comes back when garbage collection
 * deletes the packs nothing references any more.
 *
 * Order matters for a crash: a manifest left without its summary is listed
 * again (summarised from the manifest) and expired by the next run; a
 * summary is never left pointing at a removed manifest.
 */
import pLimit from 'p-limit';
import { catalogueKey } from '../format/catalogue-record.js';
import { parseWalKey, WAL_PREFIX } from '../format/wal-record.js';
import { keepKeys, readKeepMarks } from '../repository/keep-marks.js';
import { readVerifications, verificationKeys } from '../repository/verifications.js';
import { deleteUnlessLocked, lockedObject, type LockedObject } from '../repository/object-lock.js';
import type { Repository } from '../repository/repository.js';
import { decideBackups, pitrCutoff, validatePolicy, type BackupDecision, type RetentionPolicy } from '../retention/policy.js';
import { decideWal, pitrAnchors, type WalFileDecision } from './wal-retention.js';

export interface ExpireOptions {
  /** The time rules count back from (default: now). Drills and tests pass another. */
  now?: Date;
  /** Decide and report; remove nothing. */
  dryRun?: boolean;
  /** Backups that passed verification (manifest keys): the newest of each lineage is kept. Default: those whose newest verification record in the repository passed. */
  verified?: ReadonlySet<string>;
}

/** Consecutive WAL files of one timeline with the same fate. */
export interface WalRange {
  stanza: string;
  systemIdentifier: string;
  timeline: number;
  first: string;
  last: string;
  files: number;
  keep: boolean;
  reason: string;
}

export interface ExpireReport {
  now: string;
  dryRun: boolean;
  /** Start of the PITR window. */
  pitrWindowFrom: string;
  backups: BackupDecision[];
  wal: WalRange[];
  removedBackups: number;
  removedWalFiles: number;
  /** Keep marks and verification records of backups that no longer exist, removed (per backup). */
  removedMarks: number;
  /** Manifests and WAL records this run would remove but Object Lock retention keeps in place until the date given (a later run removes them). */
  locked: LockedObject[];
}

export async function expire(repo: Repository, policy: RetentionPolicy, options: ExpireOptions = {}): Promise<ExpireReport> {
  validatePolicy(policy);
  const now = options.now ?? new Date();
  const dryRun = options.dryRun ?? false;
  const [backups, marks, walList, verifications] = await Promise.all([repo.listBackups(), readKeepMarks(repo), repo.objects.list(WAL_PREFIX), options.verified ? undefined : readVerifications(repo)]);
  const marked = new Set([...marks.values()].filter((m) => m.keep).map((m) => m.backup));
  const verified = options.verified ?? new Set([...verifications!.values()].filter((v) => v.ok).map((v) => v.backup));
  const cutoff = pitrCutoff(policy, now);
  const anchors = pitrAnchors(backups, cutoff);
  const decisions = decideBackups(policy, { backups, now, marked, anchors, verified });
  const kept = new Set(decisions.filter((d) => d.keep).map((d) => d.key));
  const walKeys = walList.map((o) => o.key).filter((k) => parseWalKey(k)?.scope !== undefined);
  const walDecisions = decideWal(walKeys, backups, kept, anchors);

  const report: ExpireReport = {
    now: now.toISOString(),
    dryRun,
    pitrWindowFrom: cutoff.toISOString(),
    backups: decisions,
    wal: walRanges(walDecisions),
    removedBackups: 0,
    removedWalFiles: 0,
    removedMarks: 0,
    locked: [],
  };
  if (dryRun) return report;

  const [marksByBackup, verificationsByBackup] = await Promise.all([keepKeys(repo), verificationKeys(repo)]);
  for (const d of decisions) {
    if (d.keep) continue;
    // A manifest under retention cannot go yet; its summary stays with it (a summary is never removed before its manifest).
    const locked = await lockedObject(repo, d.key);
    if (locked) {
      report.locked.push(locked);
      continue;
    }
    await repo.objects.delete(catalogueKey(d.key));
    await repo.objects.delete(d.key);
    for (const k of [...(marksByBackup.get(d.key) ?? []), ...(verificationsByBackup.get(d.key) ?? [])]) await repo.objects.delete(k);
    marksByBackup.delete(d.key);
    verificationsByBackup.delete(d.key);
    report.removedBackups++;
  }
  // Marks and verification records of backups that no longer exist (an expire stopped part-way, a manifest removed by hand).
  const existing = new Set(backups.map((b) => b.key));
  for (const [backup, keys] of [...marksByBackup, ...verificationsByBackup]) {
    // One committed since the listing has its manifest: its mark stays.
    if (existing.has(backup) || (await repo.objects.head(backup))) continue;
    for (const k of keys) await repo.objects.delete(k);
    report.removedMarks++;
  }
  const limit = pLimit(Math.max(2, Math.min(16, repo.objects.connections)));
  const doomed = walDecisions.filter((w) => !w.keep);
  await Promise.all(
    doomed.map((w) =>
      limit(async () => {
        const locked = await deleteUnlessLocked(repo, w.key);
        if (locked) report.locked.push(locked);
        else report.removedWalFiles++;
      }),
    ),
  );
  return report;
}

/** Groups WAL decisions into runs of one timeline, in name order. */
export function walRanges(decisions: readonly WalFileDecision[]): WalRange[] {
  const sorted = [...decisions].sort((a, b) => (a.stanza + a.systemIdentifier + a.name < b.stanza + b.systemIdentifier + b.name ? -1 : 1));
  const out: WalRange[] = [];
  for (const d of sorted) {
    const last = out[out.length - 1];
    if (last && last.stanza === d.stanza && last.systemIdentifier === d.systemIdentifier && last.timeline === d.timeline && last.keep === d.keep && last.reason === d.reason) {
      last.last = d.name;
      last.files++;
    } else out.push({ stanza: d.stanza, systemIdentifier: d.systemIdentifier, timeline: d.timeline, first: d.name, last: d.name, files: 1, keep: d.keep, reason: d.reason });
  }
  return out;
}
