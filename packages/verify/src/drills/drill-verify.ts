/**
 * The nightly drill: a verification run (`verifyRun`: the WAL chain, packs
 * read whole, the newest backup restored into a sandbox, recovered, started
 * and checked) turned into a drill report — its recovery time and the data
 * the archive would lose measured against the targets, projected to
 * production's size when asked, with a post-mortem. A drill that misses a
 * target fails like one that finds damage: the finding names it.
 */
import type { Repository } from '@coffer/engine';
import { verifyRun, type VerifyRunOptions, type VerifyRunReport } from '../verify-run.js';
import type { VerifyPhaseName } from '../verify-postgres.js';
import { DEFAULT_DRILL_TARGETS, finishReport, projectRto, rpoAgainst, rtoAgainst, type DrillCheck, type DrillPhase, type RecoveryDrillReport, type DrillTargets } from './drill-report.js';

export interface VerifyDrillOptions extends VerifyRunOptions {
  targets?: DrillTargets;
  /** Project the recovery time to this size (production's data and the WAL a recovery would replay), from the rates measured. */
  projectTo?: { bytes: number; walBytes: number };
}

export interface VerifyDrillResult {
  report: RecoveryDrillReport;
  verification: VerifyRunReport;
}

export async function verifyDrill(repo: Repository, options: VerifyDrillOptions): Promise<VerifyDrillResult> {
  const started = new Date();
  const t0 = performance.now();
  /** When each backup's verification began ('plan'), in order. */
  const planned: number[] = [];
  const verification = await verifyRun(repo, {
    ...options,
    onPhase: (phase: VerifyPhaseName) => {
      if (phase === 'plan') planned.push((performance.now() - t0) / 1000);
      options.onPhase?.(phase);
    },
  });
  const finished = new Date();
  return { report: verifyDrillReport(verification, started, finished, planned, options), verification };
}

/** The drill report of a verification run; `planned`: seconds from the start at which each backup's verification began. */
export function verifyDrillReport(v: VerifyRunReport, started: Date, finished: Date, planned: readonly number[], options: Pick<VerifyDrillOptions, 'targets' | 'projectTo' | 'target'> = {}): RecoveryDrillReport {
  const targets = options.targets ?? DEFAULT_DRILL_TARGETS;
  const total = (finished.getTime() - started.getTime()) / 1000;
  const phases: DrillPhase[] = [];
  const checks: DrillCheck[] = [];
  const readSeconds = v.readData?.seconds ?? 0;
  const firstBackup = planned[0] ?? total;
  const c = v.walChain;
  phases.push({ name: 'WAL chain', startSeconds: 0, seconds: Math.max(0, firstBackup - readSeconds), ok: c.ok, detail: `${c.segmentsRead} segment records read, ${c.gaps.length} gap(s)` });
  checks.push({ name: 'WAL chain', ok: c.ok, summary: c.newest ? `complete to ${c.newest} on timeline ${c.timeline}` : 'no WAL archived' });
  if (v.readData) {
    const d = v.readData;
    phases.push({ name: 'packs read whole', startSeconds: Math.max(0, firstBackup - readSeconds), seconds: readSeconds, ok: d.problems.length === 0, detail: `${d.read} of ${d.packs} packs` });
    checks.push({ name: 'packs read whole', ok: d.problems.length === 0, summary: `${d.read} of ${d.packs} packs, ${d.chunks} chunks proved${d.problems.length ? `; ${d.problems.length} problem(s)` : ''}` });
  }
  v.backups.forEach((b, i) => {
    let at = planned[i] ?? firstBackup;
    for (const p of b.phases) {
      phases.push({ name: `${b.label}: ${p.name}`, startSeconds: at, seconds: p.seconds, ok: b.ok || p.name !== 'checks' });
      at += p.seconds;
    }
    for (const k of b.checks) checks.push({ name: `${b.label}: ${k.name}`, ok: k.ok, summary: k.summary });
  });
  const findings = [...v.failures];
  const newest = v.backups[0];
  let rto: RecoveryDrillReport['rto'];
  let rpo: RecoveryDrillReport['rpo'];
  if (newest) {
    const phase = (n: VerifyPhaseName) => newest.phases.find((p) => p.name === n)?.seconds ?? 0;
    const projected = options.projectTo
      ? projectRto({ fixedSeconds: phase('plan') + phase('start'), restoreBytes: newest.restored.bytes, restoreSeconds: phase('restore'), replayBytes: newest.wal.bytes, replaySeconds: phase('replay') }, options.projectTo)
      : undefined;
    rto = rtoAgainst(newest.rtoSeconds, targets.rtoSeconds, `plan + restore + start + replay of ${newest.label}`, projected);
    if (!rto.met) findings.push(`RTO: recovering ${newest.label} took ${rto.seconds.toFixed(1)} s, over the ${targets.rtoSeconds} s target`);
    if (rto.projected && !rto.projected.met) findings.push(`RTO: at ${(rto.projected.bytes / 1e9).toFixed(1)} GB recovery would take about ${rto.projected.seconds.toFixed(0)} s, over the ${targets.rtoSeconds} s target`);
    // What the archive holds against the time the drill began: had the primary been lost then, commits after the
    // newest one recovered would be gone. (Aimed at a point in time, the drill says nothing about loss.)
    const aimed = options.target !== undefined && Object.values(options.target).some((x) => x !== undefined);
    const last = newest.recovered?.lastCommit ? Date.parse(newest.recovered.lastCommit) : NaN;
    if (!aimed && Number.isFinite(last)) {
      rpo = rpoAgainst({ seconds: Math.max(0, (started.getTime() - last) / 1000) }, targets.rpoSeconds, 'age of the newest commit the archive recovers, when the drill began');
      if (!rpo.met) findings.push(`RPO: the newest commit the archive recovers is ${rpo.seconds!.toFixed(0)} s older than the drill, over the ${targets.rpoSeconds} s target (archiving behind, stopped, or no commits since)`);
    }
  }
  return finishReport('verify', `stanza ${v.stanza}`, started, { ok: findings.length === 0, phases, ...(rto ? { rto } : {}), ...(rpo ? { rpo } : {}), checks, findings }, { finished, idSubject: v.stanza });
}
