/**
 * What a scheduled drill (verify, failover, evacuate) leaves behind: its
 * phases with times, the recovery time and the data it would lose measured
 * against the targets (the seeds': RPO 15 minutes, RTO 30 minutes), with
 * the margin, the checks it ran, what it found, and a post-mortem filled in
 * as far as the drill can fill it. Written to a directory as JSON (for
 * tools), markdown (for people) and an SVG timeline of the phases.
 */
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { writeDurably } from '@coffer/engine';
import { renderDrillTimeline } from './drill-timeline.js';

export type DrillKind = 'verify' | 'failover' | 'evacuate';

/** The seeds' targets: a commit is safe within 15 minutes, service is back within 30. */
export const DEFAULT_DRILL_TARGETS: DrillTargets = { rpoSeconds: 900, rtoSeconds: 1800 };

export interface DrillTargets {
  rpoSeconds: number;
  rtoSeconds: number;
}

export interface DrillPhase {
  name: string;
  /** Seconds from the drill's start. */
  startSeconds: number;
  seconds: number;
  ok: boolean;
  /** One line on what the phase did or found. */
  detail?: string;
}

export interface DrillCheck {
  name: string;
  ok: boolean;
  summary: string;
}

/** Recovery time as measured, against its target; and projected to another size when the drill ran on a smaller one. */
export interface DrillRto {
  seconds: number;
  target: number;
  met: boolean;
  /** target − seconds (negative: missed by that much). */
  marginSeconds: number;
  /** What the phases that make up the recovery time are. */
  basis: string;
  projected?: DrillRtoProjection;
}

export interface DrillRtoProjection {
  /** The size projected to: data bytes restored and WAL bytes replayed. */
  bytes: number;
  walBytes: number;
  seconds: number;
  met: boolean;
  marginSeconds: number;
  /** The throughputs it rests on. */
  restoreBytesPerSecond: number;
  replayBytesPerSecond: number;
}

/** Data lost, in whichever units the drill could measure. */
export interface DrillRpo {
  seconds?: number;
  /** WAL bytes between what was acknowledged and what was recovered. */
  bytes?: number;
  commits?: number;
  target: number;
  /** Met when the seconds (or, unmeasured, nothing lost) are within the target. */
  met: boolean;
  marginSeconds?: number;
  basis: string;
}

export interface RecoveryDrillReport {
  v: 1;
  kind: DrillKind;
  /** Names the report's files: `<startedAt, compact>-<kind>-<subject>`. */
  id: string;
  /** What was drilled: a stanza, a cluster. */
  subject: string;
  startedAt: string;
  finishedAt: string;
  ok: boolean;
  phases: DrillPhase[];
  rto?: DrillRto;
  rpo?: DrillRpo;
  checks: DrillCheck[];
  /** Every problem the drill found, each naming what is at fault. */
  findings: string[];
  postMortem: { summary: string; timeline: string[]; improve: string[] };
}

/** The recovery-time figures against a target. */
export function rtoAgainst(seconds: number, target: number, basis: string, projected?: Omit<DrillRtoProjection, 'met' | 'marginSeconds'>): DrillRto {
  return {
    seconds,
    target,
    met: seconds <= target,
    marginSeconds: target - seconds,
    basis,
    ...(projected ? { projected: { ...projected, met: projected.seconds <= target, marginSeconds: target - projected.seconds } } : {}),
  };
}

/**
 * Recovery time at another size, from what the drill measured: the fixed
 * part (planning, starting the server) as it was, restoring and replaying
 * at the rates seen. A drill on a small data set says what production's
 * would take.
 */
export function projectRto(measured: { fixedSeconds: number; restoreBytes: number; restoreSeconds: number; replayBytes: number; replaySeconds: number }, to: { bytes: number; walBytes: number }): Omit<DrillRtoProjection, 'met' | 'marginSeconds'> {
  const rate = (bytes: number, seconds: number) => (seconds > 0 && bytes > 0 ? bytes / seconds : 0);
  const restoreBytesPerSecond = rate(measured.restoreBytes, measured.restoreSeconds);
  const replayBytesPerSecond = rate(measured.replayBytes, measured.replaySeconds);
  // No bytes measured for a phase: it is taken to cost what it cost (nothing to scale by).
  const scaled = (bytes: number, r: number, seconds: number) => (r > 0 ? bytes / r : seconds);
  return {
    bytes: to.bytes,
    walBytes: to.walBytes,
    seconds: measured.fixedSeconds + scaled(to.bytes, restoreBytesPerSecond, measured.restoreSeconds) + scaled(to.walBytes, replayBytesPerSecond, measured.replaySeconds),
    restoreBytesPerSecond,
    replayBytesPerSecond,
  };
}

/** The data-loss figures against a target. */
export function rpoAgainst(measured: { seconds?: number; bytes?: number; commits?: number }, target: number, basis: string): DrillRpo {
  const met = measured.seconds !== undefined ? measured.seconds <= target : (measured.commits ?? 0) === 0 && (measured.bytes ?? 0) === 0;
  return { ...measured, target, met, ...(measured.seconds !== undefined ? { marginSeconds: target - measured.seconds } : {}), basis };
}

/** A finished drill's report: id and times filled in, the post-mortem written from the rest. */
export function finishReport(
  kind: DrillKind,
  subject: string,
  started: Date,
  parts: Pick<RecoveryDrillReport, 'ok' | 'phases' | 'rto' | 'rpo' | 'checks' | 'findings'>,
  /** When the drill ended (default: now), and what its id names (default: the subject). */
  end: { finished?: Date; idSubject?: string } = {},
): RecoveryDrillReport {
  const body = {
    v: 1 as const,
    kind,
    id: drillId(kind, end.idSubject ?? subject, started),
    subject,
    startedAt: started.toISOString(),
    finishedAt: (end.finished ?? new Date()).toISOString(),
    ok: parts.ok,
    phases: parts.phases,
    ...(parts.rto ? { rto: parts.rto } : {}),
    ...(parts.rpo ? { rpo: parts.rpo } : {}),
    checks: parts.checks,
    findings: parts.findings,
  };
  return { ...body, postMortem: postMortemOf(body) };
}

/** A report's id: its start time (UTC, to the second, no colons) with its kind and subject. */
export function drillId(kind: DrillKind, subject: string, startedAt: Date): string {
  const t = startedAt.toISOString().replace(/\.\d+Z$/, 'Z').replace(/[-:]/g, '');
  return `${t}-${kind}-${subject.replace(/[^A-Za-z0-9_.-]/g, '_')}`;
}

/**
 * The post-mortem a drill can fill in itself: what happened (the phases), the
 * targets and margins, and what to improve where it found a problem or a
 * margin thinner than a fifth of the target. People add the rest.
 */
export function postMortemOf(r: Omit<RecoveryDrillReport, 'postMortem'>): RecoveryDrillReport['postMortem'] {
  const s = (n: number) => `${n.toFixed(n < 10 ? 2 : 1)} s`;
  const improve: string[] = [];
  for (const f of r.findings) improve.push(`Fix: ${f}`);
  const thin = (margin: number, target: number) => margin >= 0 && margin < target / 5;
  if (r.rto && !r.rto.met) improve.push(`Recovery took ${s(r.rto.seconds)}, over the ${s(r.rto.target)} target: restore from nearer storage, take base backups more often (less WAL to replay), or keep a standby to promote.`);
  else if (r.rto && thin(r.rto.marginSeconds, r.rto.target)) improve.push(`Recovery took ${s(r.rto.seconds)}, within ${s(r.rto.marginSeconds)} of the ${s(r.rto.target)} target.`);
  if (r.rto?.projected && !r.rto.projected.met) improve.push(`At production's size recovery would take about ${s(r.rto.projected.seconds)}, over the target.`);
  if (r.rpo && !r.rpo.met) improve.push(`Data at risk exceeded the ${s(r.rpo.target)} target: stream WAL (coffer wal-receive) or archive more often (archive_timeout).`);
  const summary = `${r.kind} drill of ${r.subject} ${r.ok ? 'passed' : 'FAILED'}` + (r.rto ? `; recovery ${s(r.rto.seconds)} (target ${s(r.rto.target)}, ${r.rto.met ? 'met' : 'missed'})` : '') + (r.rpo ? `; data at risk ${rpoText(r.rpo)} (target ${s(r.rpo.target)}, ${r.rpo.met ? 'met' : 'missed'})` : '') + '.';
  return {
    summary,
    timeline: r.phases.map((p) => `+${s(p.startSeconds)} ${p.name} (${s(p.seconds)})${p.ok ? '' : ' FAILED'}${p.detail ? `: ${p.detail}` : ''}`),
    improve,
  };
}

function rpoText(r: DrillRpo): string {
  const parts: string[] = [];
  if (r.seconds !== undefined) parts.push(`${r.seconds.toFixed(r.seconds < 10 ? 2 : 1)} s`);
  if (r.commits !== undefined) parts.push(`${r.commits} commits`);
  if (r.bytes !== undefined) parts.push(`${r.bytes} WAL bytes`);
  return parts.join(', ') || 'not measured';
}

export function renderDrillMarkdown(r: RecoveryDrillReport): string {
  const s = (n: number) => `${n.toFixed(n < 10 ? 2 : 1)} s`;
  const out: string[] = [`# ${r.kind[0]!.toUpperCase()}${r.kind.slice(1)} drill of ${r.subject}: ${r.ok ? 'passed' : 'FAILED'}`, '', `Started ${r.startedAt}, finished ${r.finishedAt}.`, '', `![phases](${r.id}.svg)`, ''];
  out.push('## Targets', '', '| | measured | target | | margin |', '|:--|--:|--:|:--|--:|');
  if (r.rto) out.push(`| RTO (${r.rto.basis}) | ${s(r.rto.seconds)} | ${s(r.rto.target)} | ${r.rto.met ? 'met' : '**missed**'} | ${s(r.rto.marginSeconds)} |`);
  if (r.rto?.projected) {
    const p = r.rto.projected;
    out.push(`| RTO projected to ${(p.bytes / 1e9).toFixed(2)} GB + ${(p.walBytes / 1e9).toFixed(2)} GB of WAL | ${s(p.seconds)} | ${s(r.rto.target)} | ${p.met ? 'met' : '**missed**'} | ${s(p.marginSeconds)} |`);
  }
  if (r.rpo) out.push(`| RPO (${r.rpo.basis}) | ${rpoText(r.rpo)} | ${s(r.rpo.target)} | ${r.rpo.met ? 'met' : '**missed**'} | ${r.rpo.marginSeconds !== undefined ? s(r.rpo.marginSeconds) : '-'} |`);
  if (r.rto?.projected) out.push('', `Projection: restore at ${(r.rto.projected.restoreBytesPerSecond / 1e6).toFixed(1)} MB/s and replay at ${(r.rto.projected.replayBytesPerSecond / 1e6).toFixed(1)} MB/s as measured, planning and start as they took.`);
  out.push('', '## Phases', '', '| phase | from | seconds | |', '|:--|--:|--:|:--|');
  for (const p of r.phases) out.push(`| ${p.name} | +${s(p.startSeconds)} | ${s(p.seconds)} | ${p.ok ? 'ok' : '**failed**'}${p.detail ? `: ${p.detail.replace(/\|/g, '\\|')}` : ''} |`);
  if (r.checks.length > 0) {
    out.push('', '## Checks', '');
    for (const c of r.checks) out.push(`- ${c.ok ? 'ok' : '**FAILED**'} ${c.name}: ${c.summary}`);
  }
  if (r.findings.length > 0) {
    out.push('', '## Findings', '');
    for (const f of r.findings) out.push(`- ${f}`);
  }
  out.push('', '## Post-mortem', '', `**What happened.** ${r.postMortem.summary}`, '', '**Timeline.**', '');
  for (const t of r.postMortem.timeline) out.push(`- ${t}`);
  out.push('', '**What to improve.**', '');
  for (const i of r.postMortem.improve) out.push(`- ${i}`);
  out.push('- (people: what surprised you, what the runbook lacked, who does what by when)', '');
  return out.join('\n');
}

/** Writes `<dir>/<id>.json`, `.md` and `.svg`, each whole and durable; the paths. */
export async function writeDrillReport(dir: string, r: RecoveryDrillReport): Promise<{ json: string; markdown: string; svg: string }> {
  await mkdir(dir, { recursive: true });
  const paths = { json: join(dir, `${r.id}.json`), markdown: join(dir, `${r.id}.md`), svg: join(dir, `${r.id}.svg`) };
  const texts: [string, string][] = [
    [paths.svg, renderDrillTimeline(r)],
    [paths.markdown, renderDrillMarkdown(r)],
    // Last: a tool that lists the JSON reports finds one only once its companions are there.
    [paths.json, `${JSON.stringify(r, null, 2)}\n`],
  ];
  for (const [path, text] of texts) await writeDurably(path, text, 0o644);
  return paths;
}
