/**
 * The weekly failover drill: a planned switchover to a standby and a
 * controlled fallback, under a probe writer, measured and checked. The
 * writer commits numbered rows to whichever node the decision log names
 * primary (as a client following the cutover would), remembering each commit
 * acknowledged, when and where. Then: switch over to the standby, wait for
 * writes there; wait for the old primary to stream from it again (its guard
 * rejoins it); switch back and wait the same way. At the end every
 * acknowledged row must be on the original primary (0 commits lost), and the
 * topology must be as it began: the same primary, the standby streaming from
 * it, the cutover name on it.
 *
 * The decision log and the switchover are the caller's (`@coffer/failover`,
 * wired by the CLI); this module only drives and measures, through plain
 * connections. A step that does not complete in time ends the drill with the
 * step named and the topology as it then stands said in the findings.
 */
import { randomBytes } from 'node:crypto';
import { createProbeTable, DrillSteps, dropProbeRun, probeRows, ProbeWriter, query, StepFailed, type ProbeNode } from './probe-writer.js';
import { DEFAULT_DRILL_TARGETS, finishReport, rpoAgainst, rtoAgainst, type DrillCheck, type DrillTargets, type RecoveryDrillReport } from './drill-report.js';

export interface FailoverDrillNode extends ProbeNode {
  /** The address clients reach it at, when traffic moves by DNS. */
  address?: string;
}

export interface FailoverDrillOptions {
  /** The cluster's name, for the report. */
  cluster: string;
  nodes: readonly FailoverDrillNode[];
  /** The node the decision log names primary now. */
  primary: () => Promise<string>;
  /** Names `to` primary: a planned switchover (nothing lost; the old primary stops cleanly and rejoins). */
  switchover: (to: string) => Promise<void>;
  /** The addresses the cutover name resolves to now, when traffic moves by DNS. */
  resolve?: () => Promise<string[]>;
  /** The standby to switch to (default: the streaming standby least behind). */
  to?: string;
  /** Longest wait for each step (default 180 s). */
  stepTimeoutMs?: number;
  targets?: DrillTargets;
  onProgress?: (line: string) => void;
}

/** The nodes streaming from `primary` now, by application_name, least behind first. */
async function streamingFrom(primary: FailoverDrillNode): Promise<string[]> {
  const rows = await query<{ name: string }>(primary, "SELECT application_name AS name FROM pg_stat_replication WHERE state = 'streaming' ORDER BY pg_current_wal_lsn() - replay_lsn NULLS LAST");
  return rows.map((r) => r.name);
}

export async function failoverDrill(o: FailoverDrillOptions): Promise<RecoveryDrillReport> {
  const started = new Date();
  const targets = o.targets ?? DEFAULT_DRILL_TARGETS;
  const steps = new DrillSteps(o.stepTimeoutMs ?? 180_000, o.onProgress ?? (() => undefined));
  const t0 = steps.t0;
  const phase = steps.phase.bind(steps);
  const waitFor = steps.waitFor.bind(steps);
  const checks: DrillCheck[] = [];
  const findings: string[] = [];
  const node = (name: string) => {
    const n = o.nodes.find((x) => x.name === name);
    if (!n) throw new StepFailed(`${name} is not one of the failover nodes (${o.nodes.map((x) => x.name).join(', ')})`);
    return n;
  };

  const run = randomBytes(6).toString('hex');
  const writer = new ProbeWriter(o.nodes, o.primary, run, t0);
  let original: FailoverDrillNode | undefined;
  let standby: FailoverDrillNode | undefined;
  const gaps: { to: string; seconds: number }[] = [];
  let touched = false;
  try {
    await phase('preflight', async () => {
      original = node(await o.primary());
      const streaming = await streamingFrom(original);
      const target = o.to ?? streaming.find((n) => n !== original!.name && o.nodes.some((x) => x.name === n));
      if (!target) throw new StepFailed(`no standby streams from ${original.name}: nothing to switch over to`);
      standby = node(target);
      if (standby.name === original.name) throw new StepFailed(`${target} is the primary already`);
      if (!streaming.includes(standby.name)) throw new StepFailed(`${standby.name} does not stream from ${original.name} now: a switchover to it could lose commits`);
      await createProbeTable(original);
      return `${original.name} primary; ${streaming.join(', ')} streaming from it; switching to ${standby.name}`;
    });
    const P = original!;
    const S = standby!;
    await phase('probe writer', async () => {
      writer.start();
      await waitFor(`the probe writer to commit on ${P.name}`, async () => writer.acked.length >= 20);
      return `${writer.acked.length} commits on ${P.name}`;
    });
    const switchTo = async (to: FailoverDrillNode, from: FailoverDrillNode) => {
      await phase(`switchover to ${to.name}`, async () => {
        const mark = writer.acked.length;
        touched = true;
        await o.switchover(to.name);
        await waitFor(`writes on ${to.name} after the switchover`, async () => writer.wroteOn(to.name, mark));
        const gap = writer.longestGap(mark);
        gaps.push({ to: to.name, seconds: gap });
        return `writes on ${to.name}; the longest wait between two commits ${gap.toFixed(2)} s`;
      });
      await phase(`${from.name} streams from ${to.name}`, async () => {
        await waitFor(`${from.name} to stream from ${to.name} (its guard rejoins it: failover.nodes[].rejoin)`, async () => (await streamingFrom(to)).includes(from.name));
        return undefined;
      });
    };
    await switchTo(S, P);
    await switchTo(P, S);
    await phase('checks', async () => {
      await writer.stop();
      const present = await probeRows(P, run);
      const lost = writer.acked.filter((a) => !present.has(a.id));
      checks.push({ name: 'no commit lost', ok: lost.length === 0, summary: `${writer.acked.length} commits acknowledged, ${lost.length} missing on ${P.name}` });
      if (lost.length > 0) findings.push(`${lost.length} acknowledged commit(s) are missing on ${P.name} after the drill (the first: row ${lost[0]!.id}, acknowledged by ${lost[0]!.node})`);
      const primary = await o.primary();
      checks.push({ name: 'primary', ok: primary === P.name, summary: `the decision log names ${primary}` });
      if (primary !== P.name) findings.push(`the decision log names ${primary} primary after the drill, not ${P.name}`);
      const inRecovery = (await query<{ r: boolean }>(P, 'SELECT pg_is_in_recovery() AS r'))[0]!.r;
      const streaming = await streamingFrom(P);
      const topologyOk = !inRecovery && streaming.includes(S.name);
      checks.push({ name: 'topology', ok: topologyOk, summary: `${P.name} ${inRecovery ? 'in recovery' : 'primary'}; streaming from it: ${streaming.join(', ') || 'none'}` });
      if (!topologyOk) findings.push(`the topology did not come back: ${P.name} ${inRecovery ? 'is in recovery' : 'is primary'}, ${streaming.includes(S.name) ? `${S.name} streams from it` : `${S.name} does not stream from it`}`);
      if (o.resolve && P.address) {
        const addresses = await o.resolve();
        const ok = addresses.length === 1 && addresses[0] === P.address;
        checks.push({ name: 'cutover name', ok, summary: `resolves to ${addresses.join(', ') || 'nothing'}` });
        if (!ok) findings.push(`the cutover name resolves to ${addresses.join(', ') || 'nothing'}, not ${P.name}'s ${P.address}`);
      }
      return `${writer.acked.length} commits, ${lost.length} lost`;
    });
    await phase('cleanup', async () => {
      await dropProbeRun(P, run);
      return undefined;
    });
  } catch (e) {
    await writer.stop();
    const where = await o.primary().catch(() => 'unknown');
    findings.push(`${(e as Error).message}${touched ? ` (the decision log names ${where} primary now: see coffer failover status before anything else)` : ' (nothing was changed)'}`);
  }
  const lost = checks.find((c) => c.name === 'no commit lost');
  const worst = gaps.reduce((m, g) => Math.max(m, g.seconds), 0);
  const rto = gaps.length > 0 ? rtoAgainst(worst, targets.rtoSeconds, 'the longest a client waited between two commits across a switchover') : undefined;
  if (rto && !rto.met) findings.push(`RTO: a client waited ${rto.seconds.toFixed(1)} s for a commit during a switchover, over the ${targets.rtoSeconds} s target`);
  const lostCount = lost ? Number(/(\d+) missing/.exec(lost.summary)?.[1] ?? 0) : undefined;
  const rpo = lostCount !== undefined ? rpoAgainst({ commits: lostCount }, targets.rpoSeconds, 'acknowledged commits missing after the switchover and the fallback') : undefined;
  return finishReport('failover', o.cluster, started, { ok: findings.length === 0 && checks.every((c) => c.ok), phases: steps.phases, ...(rto ? { rto } : {}), ...(rpo ? { rpo } : {}), checks, findings });
}
