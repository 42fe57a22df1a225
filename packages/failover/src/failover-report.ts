/**
 * The report of one failover, written by the new primary's guard once
 * traffic has moved: when each phase ended (detected, quorum, old primary
 * fenced, promoted, traffic moved, first write accepted), how long each took,
 * and the RPO as WAL bytes between the old primary's last position any
 * observer saw and the position the new primary was promoted at. Times come
 * from several hosts' wall clocks: they are for people and reports, and no
 * decision reads them.
 *
 * Stored in the decision store as `failover/<cluster>/reports/<epoch>`
 * (JSON, create-only), and rendered as markdown and metrics.
 */
import type { LeaderRecord, VoteRecord } from './decision-records.js';
import { lsnBytes } from './lsn.js';

export interface FailoverReport {
  format: 1;
  cluster: string;
  epoch: number;
  node: string;
  previous: string | undefined;
  reason: LeaderRecord['reason'];
  decidedBy: string;
  /** Wall-clock times (ISO 8601) at which each phase ended. */
  phases: {
    /** The latest good probe any of the majority's observers had of the old primary: the failure began after it (none for a switchover). */
    lastHealthy: string | undefined;
    /** The first "down" vote among those that made the majority. */
    detected: string | undefined;
    /** The leader record of this epoch was written. */
    quorum: string;
    /** The old primary's lease ended (released after its fence, or silent for its time-to-live plus margin). */
    fenced: string;
    promoted: string;
    /** Every cutover step succeeded. */
    trafficMoved: string;
    /** A write probe on the new primary committed. */
    firstWrite: string;
  };
  /** Seconds each phase took after the one before, and in all (detected → first write). */
  seconds: { detected: number | undefined; quorum: number | undefined; fenced: number; promoted: number; trafficMoved: number; firstWrite: number; total: number | undefined };
  /** The old primary's last position an observer saw, and where the new primary was promoted. */
  oldPrimaryLsn: string | undefined;
  promotedAtLsn: string | undefined;
  /** WAL bytes the new primary never had (0 when it had all the observers saw); undefined when unknown. */
  rpoBytes: number | undefined;
}

const diff = (a: string | undefined, b: string): number | undefined => (a === undefined ? undefined : Math.round((Date.parse(b) - Date.parse(a)) / 100) / 10);

export function failoverReport(leader: LeaderRecord, votes: readonly VoteRecord[], times: { fenced: string; promoted: string; trafficMoved: string; firstWrite: string }, promotedAtLsn: string | undefined): FailoverReport {
  const against = votes.filter((v) => v.verdict === 'down' && leader.votes.includes(v.observer));
  const detected = against.map((v) => v.writtenAt).sort()[0];
  const lastHealthy = against.map((v) => v.lastHealthyAt).filter((t): t is string => t !== undefined).sort().at(-1);
  const seen = votes.map((v) => v.primaryLsn).filter((l): l is string => l !== undefined);
  const oldPrimaryLsn = seen.sort((a, b) => lsnBytes(a) - lsnBytes(b)).at(-1);
  const rpoBytes = oldPrimaryLsn !== undefined && promotedAtLsn !== undefined ? Math.max(0, lsnBytes(oldPrimaryLsn) - lsnBytes(promotedAtLsn)) : undefined;
  return {
    format: 1,
    cluster: leader.cluster,
    epoch: leader.epoch,
    node: leader.node,
    previous: leader.previous,
    reason: leader.reason,
    decidedBy: leader.decidedBy,
    phases: { lastHealthy, detected, quorum: leader.writtenAt, ...times },
    seconds: {
      detected: diff(lastHealthy, detected ?? leader.writtenAt),
      quorum: diff(detected, leader.writtenAt),
      fenced: diff(leader.writtenAt, times.fenced)!,
      promoted: diff(times.fenced, times.promoted)!,
      trafficMoved: diff(times.promoted, times.trafficMoved)!,
      firstWrite: diff(times.trafficMoved, times.firstWrite)!,
      // A switchover has no failure to detect: it begins when the next primary is named.
      total: diff(lastHealthy ?? detected ?? leader.writtenAt, times.firstWrite),
    },
    oldPrimaryLsn,
    promotedAtLsn,
    rpoBytes,
  };
}

const s = (n: number | undefined): string => (n === undefined ? '?' : `${n.toFixed(1)} s`);

export function reportMarkdown(r: FailoverReport): string {
  return [
    `# Failover of ${r.cluster}: epoch ${r.epoch}, ${r.previous ?? '?'} → ${r.node} (${r.reason}, decided by ${r.decidedBy})`,
    '',
    '| phase | ended at | took |',
    '|---|---|---:|',
    `| last seen healthy | ${r.phases.lastHealthy ?? '?'} | |`,
    `| detected (first "down" vote) | ${r.phases.detected ?? '?'} | ${s(r.seconds.detected)} |`,
    `| quorum (leader record written) | ${r.phases.quorum} | ${s(r.seconds.quorum)} |`,
    `| old primary fenced (its lease ended) | ${r.phases.fenced} | ${s(r.seconds.fenced)} |`,
    `| promoted | ${r.phases.promoted} | ${s(r.seconds.promoted)} |`,
    `| traffic moved | ${r.phases.trafficMoved} | ${s(r.seconds.trafficMoved)} |`,
    `| first write accepted | ${r.phases.firstWrite} | ${s(r.seconds.firstWrite)} |`,
    `| **total** (last seen healthy → first write) | | **${s(r.seconds.total)}** |`,
    '',
    `RPO: ${r.rpoBytes === undefined ? 'unknown' : `${r.rpoBytes} bytes of WAL`} (the old primary's last position seen ${r.oldPrimaryLsn ?? '?'}, promoted at ${r.promotedAtLsn ?? '?'}).`,
    '',
  ].join('\n');
}

/** The report's figures as metric values (seconds, bytes), for a textfile. */
export function reportFigures(r: FailoverReport): Record<string, number> {
  const out: Record<string, number> = { failover_epoch: r.epoch };
  const names: Record<keyof FailoverReport['seconds'], string> = { detected: 'detected', quorum: 'quorum', fenced: 'fenced', promoted: 'promoted', trafficMoved: 'traffic_moved', firstWrite: 'first_write', total: 'rto' };
  for (const [phase, v] of Object.entries(r.seconds) as [keyof FailoverReport['seconds'], number | undefined][]) if (v !== undefined) out[`failover_${names[phase]}_seconds`] = v;
  if (r.rpoBytes !== undefined) out.failover_rpo_bytes = r.rpoBytes;
  return out;
}
