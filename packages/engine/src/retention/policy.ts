/**
 * Retention rules: which backups to keep, each decision with the rules that
 * made it. Pure functions of the backups' summaries, the marks and a time
 * `now`, so that drills and tests can ask "what would be kept on day N".
 *
 * Backups are judged per lineage — a PostgreSQL stanza, or one host's files
 * source — by the time they finished (a PostgreSQL backup: its stop time):
 *
 * - `minCount`: the newest N are always kept (default 1);
 * - hot: every backup finished within `hotDays`;
 * - warm: the newest backup of each UTC day within `warmDays`;
 * - cold: the newest of each ISO week (or calendar month) within `coldMonths`;
 * - a `keep` mark keeps a backup until the mark is taken off;
 * - the newest backup that passed verification is kept;
 * - `anchors` (the backups the PITR window starts from) are kept;
 * - a backup that finished after `now` (another host's clock ahead) is kept.
 */
import { InvalidArgumentError } from '../errors.js';
import type { BackupSummary } from '../format/manifest.js';

export interface RetentionPolicy {
  /** The newest this many backups of each lineage are always kept (default 1, at least 1). */
  minCount?: number;
  /** Keep every backup that finished within this many days. */
  hotDays?: number;
  /** Keep the newest backup of each day (UTC) within this many days. */
  warmDays?: number;
  /** Keep the newest backup of each week (or month) within this many months. */
  coldMonths?: number;
  /** The cold tier's period (default `week`). */
  coldEvery?: 'week' | 'month';
  /**
   * PostgreSQL: every point of time within this many days stays reachable
   * (default: the longest tier). Outside it, only the WAL each kept backup
   * needs to be consistent is kept.
   */
  pitrWindowDays?: number;
}

export interface BackupDecision {
  key: string;
  id: string;
  label: string;
  /** The lineage it was judged in: `postgres:<stanza>` or `files:<host>:<source>`. */
  lineage: string;
  /** When it finished (a PostgreSQL backup: its stop time). */
  time: string;
  keep: boolean;
  /** Every rule that keeps it, or why it goes. */
  reasons: string[];
  /** The same rules by name: min-count, hot, warm, cold, keep-mark, verified, pitr-window, future; or expire. */
  rules: RetentionRule[];
}

export type RetentionRule = 'min-count' | 'hot' | 'warm' | 'cold' | 'keep-mark' | 'verified' | 'pitr-window' | 'future' | 'expire';

const DAY = 86_400_000;

export function validatePolicy(policy: RetentionPolicy): Required<Pick<RetentionPolicy, 'minCount' | 'coldEvery'>> & RetentionPolicy {
  const count = (name: string, v: number | undefined, min: number) => {
    if (v !== undefined && (!Number.isInteger(v) || v < min)) throw new InvalidArgumentError(name, `must be a whole number ≥ ${min}, got ${v}`);
  };
  const days = (name: string, v: number | undefined) => {
    if (v !== undefined && (!Number.isFinite(v) || v < 0)) throw new InvalidArgumentError(name, `must be a number of days ≥ 0, got ${v}`);
  };
  count('--keep-min', policy.minCount, 1);
  days('--keep-hot', policy.hotDays);
  days('--keep-warm', policy.warmDays);
  count('--keep-cold', policy.coldMonths, 0);
  days('--pitr-window', policy.pitrWindowDays);
  if (policy.coldEvery !== undefined && policy.coldEvery !== 'week' && policy.coldEvery !== 'month') throw new InvalidArgumentError('--cold-every', `must be week or month, got ${String(policy.coldEvery)}`);
  if (policy.hotDays === undefined && policy.warmDays === undefined && policy.coldMonths === undefined && policy.minCount === undefined) {
    throw new InvalidArgumentError('retention', 'no rule given (--keep-min, --keep-hot, --keep-warm, --keep-cold): expire keeps nothing it is not told to keep');
  }
  return { ...policy, minCount: policy.minCount ?? 1, coldEvery: policy.coldEvery ?? 'week' };
}

/** `now` minus `months` calendar months (UTC), the day of month clamped. */
export function monthsBefore(now: Date, months: number): Date {
  const d = new Date(now.getTime());
  const day = d.getUTCDate();
  d.setUTCDate(1);
  d.setUTCMonth(d.getUTCMonth() - months);
  const last = new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + 1, 0)).getUTCDate();
  d.setUTCDate(Math.min(day, last));
  return d;
}

/** The PITR window's start: `now` minus the window (default: the longest tier). */
export function pitrCutoff(policy: RetentionPolicy, now: Date): Date {
  if (policy.pitrWindowDays !== undefined) return new Date(now.getTime() - policy.pitrWindowDays * DAY);
  const starts = [
    policy.hotDays !== undefined ? now.getTime() - policy.hotDays * DAY : undefined,
    policy.warmDays !== undefined ? now.getTime() - policy.warmDays * DAY : undefined,
    policy.coldMonths !== undefined ? monthsBefore(now, policy.coldMonths).getTime() : undefined,
  ].filter((t): t is number => t !== undefined);
  return new Date(starts.length ? Math.min(...starts) : now.getTime());
}

/** When a backup counts as taken: a PostgreSQL backup's stop time, else when it finished. */
export function backupTime(b: BackupSummary): number {
  return Date.parse(b.postgres?.stopTime ?? b.finishedAt);
}

export function lineageOf(b: BackupSummary): string {
  return b.kind === 'postgres' ? `postgres:${b.stanza ?? 'main'}` : `files:${b.hostname}:${b.source}`;
}

function isoWeek(t: number): string {
  // Monday-based weeks, keyed by their Monday (1970-01-01 was a Thursday).
  const monday = Math.floor((t / DAY + 3) / 7) * 7 - 3;
  return `week of ${new Date(monday * DAY).toISOString().slice(0, 10)}`;
}

export interface DecideInput {
  backups: readonly BackupSummary[];
  now: Date;
  /** Backups marked keep (manifest keys). */
  marked?: ReadonlySet<string>;
  /** Backups that passed verification (manifest keys). */
  verified?: ReadonlySet<string>;
  /** Backups kept for the PITR window, with the reason to show. */
  anchors?: ReadonlyMap<string, string>;
}

/** Decides every backup, newest first within each lineage; the result is in the input's order. */
export function decideBackups(policy: RetentionPolicy, input: DecideInput): BackupDecision[] {
  const p = validatePolicy(policy);
  const now = input.now.getTime();
  const decisions = new Map<string, BackupDecision>();
  const lineages = new Map<string, BackupSummary[]>();
  for (const b of input.backups) lineages.set(lineageOf(b), [...(lineages.get(lineageOf(b)) ?? []), b]);
  for (const [lineage, list] of lineages) {
    const newestFirst = [...list].sort((a, b) => backupTime(b) - backupTime(a) || (a.key < b.key ? 1 : -1));
    const warmSeen = new Set<string>();
    const coldSeen = new Set<string>();
    let verifiedKept = false;
    const coldStart = p.coldMonths !== undefined ? monthsBefore(input.now, p.coldMonths).getTime() : Infinity;
    newestFirst.forEach((b, rank) => {
      const t = backupTime(b);
      const reasons: string[] = [];
      const rules: RetentionRule[] = [];
      const keep = (rule: RetentionRule, reason: string) => {
        rules.push(rule);
        reasons.push(reason);
      };
      if (t > now) keep('future', 'finished after now');
      if (rank < p.minCount) keep('min-count', `among the newest ${p.minCount}`);
      if (p.hotDays !== undefined && t <= now && now - t <= p.hotDays * DAY) keep('hot', `hot: within ${p.hotDays} days`);
      if (p.warmDays !== undefined && t <= now && now - t <= p.warmDays * DAY) {
        const day = new Date(t).toISOString().slice(0, 10);
        if (!warmSeen.has(day)) {
          warmSeen.add(day);
          keep('warm', `warm: newest of ${day}`);
        }
      }
      if (t <= now && t >= coldStart) {
        const period = p.coldEvery === 'month' ? new Date(t).toISOString().slice(0, 7) : isoWeek(t);
        if (!coldSeen.has(period)) {
          coldSeen.add(period);
          keep('cold', `cold: newest of ${period}`);
        }
      }
      if (input.marked?.has(b.key)) keep('keep-mark', 'marked keep');
      if (!verifiedKept && input.verified?.has(b.key)) {
        verifiedKept = true;
        keep('verified', 'newest verified');
      }
      const anchor = input.anchors?.get(b.key);
      if (anchor) keep('pitr-window', anchor);
      decisions.set(b.key, {
        key: b.key,
        id: b.id,
        label: b.label,
        lineage,
        time: new Date(t).toISOString(),
        keep: reasons.length > 0,
        reasons: reasons.length > 0 ? reasons : ['outside every rule'],
        rules: rules.length > 0 ? rules : ['expire'],
      });
    });
  }
  return input.backups.map((b) => decisions.get(b.key)!);
}
