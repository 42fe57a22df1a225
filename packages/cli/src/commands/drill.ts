/**
 * `coffer drill`: recovery drills.
 * - `drill restore <backup>` (also `drill <backup>`): restore a backup into a temporary sandbox, re-verify every restored file, clean up.
 * - `drill verify`: the nightly drill — a `verify` run reported against the RPO and RTO targets, with a post-mortem, in a reports directory.
 * - `drill failover`: the weekly drill — a switchover to a standby and back under a probe writer (the policy's failover section; opt-in).
 * - `drill evacuate`: the quarterly drill — region A lost, region B takes over from what it holds (opt-in).
 */
import { rmSync } from 'node:fs';
import { CorruptObjectError, InvalidArgumentError, parseByteSize, VerifyFailedError } from '@coffer/engine';
import { defaultRestoreCommand, secondsOption, withSandboxCleanup, type CliContext } from '../context.js';
import { humanBytes } from '../progress.js';
import { verifyRunOptions, withVerifyOptions, type VerifyCliOptions } from './verify.js';
import { policyPath, POLICY_OPTION } from './policy.js';
import type { RecoveryDrillReport } from '@coffer/verify';
import { openDecisions } from './failover.js';

interface DrillVerifyOptions extends VerifyCliOptions {
  reports: string;
  rpoTarget: number;
  rtoTarget: number;
  projectBytes?: number;
  projectWalBytes?: number;
}

/** A size such as 500GB or 2TiB. */
function bytesOption(name: string) {
  return (value: string): number => {
    const n = parseByteSize(value);
    if (n === undefined) throw new InvalidArgumentError(name, `expected a size such as 500GB, 1.5TB or 2TiB, got ${JSON.stringify(value)}`);
    return Math.round(n);
  };
}

export function register(ctx: CliContext): void {
  const { program, openRepo, say, report: figures } = ctx;
  const drill = program.command('drill').description('recovery drills: restore a backup into a sandbox and re-verify it (drill restore, the default), or the nightly verification drill with its RPO/RTO report (drill verify)');

  drill
    .command('restore <backup>', { isDefault: true })
    .description('restore a backup into a temporary sandbox, re-verify every restored file, and clean up')
    .option('--sandbox <dir>', 'parent directory for the sandbox')
    .option('--json', 'print the report as JSON')
    .action(async (selector: string, o: { sandbox?: string; json?: boolean }) => {
      const repo = await openRepo();
      const { drillRestore } = await import('@coffer/verify');
      const report = await withSandboxCleanup(
        'drill',
        (dir) => rmSync(dir, { recursive: true, force: true }),
        (onSandbox) => drillRestore(repo, selector, { ...(o.sandbox ? { sandboxParent: o.sandbox } : {}), onSandbox }),
      );
      if (o.json) say(JSON.stringify(report, null, 2));
      else say(`drill ${report.ok ? 'passed' : 'FAILED'}: ${report.backup}: ${report.files} files, ${humanBytes(report.bytes)}, restore ${report.restoreSeconds.toFixed(2)} s, re-verify ${report.verifySeconds.toFixed(2)} s${report.mismatches.length ? `; mismatched: ${report.mismatches.join(', ')}` : ''}`);
      if (!report.ok) throw new CorruptObjectError(report.backup, `restored content differs from the manifest`, report.mismatches);
    });

  withVerifyOptions(
    drill
      .command('verify [backups...]')
      .description("the nightly drill: verify (the WAL chain, packs read whole, the newest backup restored into a sandbox, recovered, started and checked), then report the measured RTO and the archive's RPO against the targets, with a post-mortem, as JSON, markdown and an SVG timeline in --reports; a missed target fails the drill")
      .option('--reports <dir>', 'directory the drill reports go to', 'drills')
      .option('--rpo-target <seconds>', 'the newest commit the archive recovers may be at most this old when the drill begins', secondsOption('--rpo-target', 0.001, 10 * 365 * 86400), 900)
      .option('--rto-target <seconds>', 'recovering the newest backup may take at most this long (plan, restore, start, replay)', secondsOption('--rto-target', 0.001, 10 * 365 * 86400), 1800)
      .option('--project-bytes <size>', "also project the recovery time to this much data (production's size, e.g. 2TB), at the rates measured", bytesOption('--project-bytes'))
      .option('--project-wal-bytes <size>', 'and this much WAL to replay (default: as much as the drill replayed)', bytesOption('--project-wal-bytes')),
  ).action(async (selectors: string[], o: DrillVerifyOptions) => {
    const options = await verifyRunOptions(ctx, selectors, o);
    const repo = await openRepo();
    const { verifyDrill, removeSandbox, writeDrillReport, renderVerifySummary } = await import('@coffer/verify');
    const { report, verification } = await withSandboxCleanup('drill verify', removeSandbox, (onSandbox) =>
      verifyDrill(repo, {
        ...options,
        onSandbox,
        targets: { rpoSeconds: o.rpoTarget, rtoSeconds: o.rtoTarget },
        ...(o.projectBytes !== undefined ? { projectTo: { bytes: o.projectBytes, walBytes: o.projectWalBytes ?? 0 } } : {}),
      }),
    );
    const paths = await writeDrillReport(o.reports, report);
    figures({
      drill_ok: report.ok ? 1 : 0,
      drill_findings: report.findings.length,
      ...(report.rto ? { drill_rto_seconds: report.rto.seconds, drill_rto_margin_seconds: report.rto.marginSeconds } : {}),
      ...(report.rpo?.seconds !== undefined ? { drill_rpo_seconds: report.rpo.seconds } : {}),
      verify_ok: verification.ok ? 1 : 0,
      verify_failures: verification.failures.length,
      verify_read_bytes: verification.readData?.bytesRead ?? 0,
      ...(verification.backups[0] ? { verify_rto_seconds: verification.backups[0].rtoSeconds } : {}),
    });
    if (o.json) say(JSON.stringify(report, null, 2));
    else {
      say(renderVerifySummary(verification));
      say(report.postMortem.summary);
      for (const f of report.findings) say(`  finding: ${f}`);
      say(`report: ${paths.markdown}`);
    }
    if (!report.ok) throw new VerifyFailedError(`stanza ${verification.stanza} (nightly drill)`, report.findings);
  });

  drill
    .command('failover')
    .description("the weekly drill: a planned switchover to a standby and back (the policy's failover section), under a probe writer; every acknowledged commit must survive, each old primary must stream again (its guard rejoins it: failover.nodes[].rejoin) and the topology end as it began; reported like drill verify. Moves production's primary twice: runs only with drills.failover.enabled in the policy")
    .option(...POLICY_OPTION)
    .option('--to <node>', 'the standby to switch to (default: drills.failover.to, else the streaming standby least behind)')
    .option('--reports <dir>', 'directory the drill reports go to (default: drills.reports, else drills)')
    .option('--rpo-target <seconds>', 'data a loss may cost, at most (default: the policy\'s, else 900)', secondsOption('--rpo-target', 0.001, 10 * 365 * 86400))
    .option('--rto-target <seconds>', 'the longest a client may wait for a commit during a switchover (default: the policy\'s, else 1800)', secondsOption('--rto-target', 0.001, 10 * 365 * 86400))
    .option('--json', 'print the report as JSON')
    .action(async (o: { policy?: string; to?: string; reports?: string; rpoTarget?: number; rtoTarget?: number; json?: boolean }) => {
      const { loadPolicy, policyFailoverDrill, drillReportsDir } = await import('@coffer/agent');
      const file = policyPath(o, ctx.io.env);
      const policy = await loadPolicy(file);
      const report = await policyFailoverDrill(policy, {
        file,
        env: ctx.io.env,
        decisions: (settings) => openDecisions(settings, ctx.io.env),
        ...(o.to ? { to: o.to } : {}),
        ...targetOverrides(o),
        onProgress: (line) => ctx.io.stderr.write(`coffer: ${line}\n`),
      });
      await finishDrill(ctx, report, drillReportsDir(policy, o.reports), o.json, `cluster ${policy.failover!.cluster} (failover drill)`);
    });

  drill
    .command('evacuate')
    .description("the quarterly drill: region A made unavailable (drills.evacuate.loseRegion), region B takes over with what it holds alone — its standby promoted, or the newest backup in this repository (region B's, opened with its keys) restored and recovered to the newest WAL it holds — the name moved, a write accepted; data lost (commits, seconds, WAL bytes) and time taken measured against the targets; then everything put back. Runs only with drills.evacuate.enabled in the policy")
    .option(...POLICY_OPTION)
    .option('--via <path>', 'promote (region B\'s standby) or restore (from this repository); default: promote when drills.evacuate.standby is set', (v: string) => {
      if (v !== 'promote' && v !== 'restore') throw new InvalidArgumentError('--via', `expected promote or restore, got ${JSON.stringify(v)}`);
      return v;
    })
    .option('--keep', 'leave region B serving and the name on it (nothing put back)')
    .option('--reports <dir>', 'directory the drill reports go to (default: drills.reports, else drills)')
    .option('--rpo-target <seconds>', 'data a loss may cost, at most (default: the policy\'s, else 900)', secondsOption('--rpo-target', 0.001, 10 * 365 * 86400))
    .option('--rto-target <seconds>', 'region B must take writes within this long of region A\'s loss (default: the policy\'s, else 1800)', secondsOption('--rto-target', 0.001, 10 * 365 * 86400))
    .option('--json', 'print the report as JSON')
    .action(async (o: { policy?: string; via?: 'promote' | 'restore'; keep?: boolean; reports?: string; rpoTarget?: number; rtoTarget?: number; json?: boolean }) => {
      const { loadPolicy, policyEvacuateDrill, drillReportsDir } = await import('@coffer/agent');
      const env = ctx.io.env;
      const file = policyPath(o, env);
      const policy = await loadPolicy(file);
      const g = ctx.globals();
      const report = await policyEvacuateDrill(policy, {
        file,
        repo: openRepo,
        env,
        ...(g.stanza ? { stanza: g.stanza } : {}),
        ...(o.via ? { via: o.via } : {}),
        ...(o.keep ? { keep: true } : {}),
        restoreCommand: (scope, repo) => defaultRestoreCommand(g, env, repo.config.repositoryId, scope),
        ...targetOverrides(o),
        onProgress: (line) => ctx.io.stderr.write(`coffer: ${line}\n`),
      });
      await finishDrill(ctx, report, drillReportsDir(policy, o.reports), o.json, `cluster ${policy.drills!.evacuate!.cluster} (evacuation drill)`);
    });
}

/** The command line's --rpo-target and --rto-target, as the policy drills take them. */
function targetOverrides(o: { rpoTarget?: number; rtoTarget?: number }): { rpoTargetSeconds?: number; rtoTargetSeconds?: number } {
  return { ...(o.rpoTarget !== undefined ? { rpoTargetSeconds: o.rpoTarget } : {}), ...(o.rtoTarget !== undefined ? { rtoTargetSeconds: o.rtoTarget } : {}) };
}

/**
 * A drill's report written (JSON, markdown, SVG), its figures for the
 * metrics, its summary or JSON printed; a failed drill ends the command with
 * its findings (exit 32), naming `what`.
 */
async function finishDrill(ctx: CliContext, report: RecoveryDrillReport, dir: string, json: boolean | undefined, what: string): Promise<void> {
  const { writeDrillReport } = await import('@coffer/verify');
  const paths = await writeDrillReport(dir, report);
  ctx.report({
    drill_ok: report.ok ? 1 : 0,
    drill_findings: report.findings.length,
    ...(report.rto ? { drill_rto_seconds: report.rto.seconds, drill_rto_margin_seconds: report.rto.marginSeconds } : {}),
    ...(report.rpo?.seconds !== undefined ? { drill_rpo_seconds: report.rpo.seconds } : {}),
    ...(report.rpo?.commits !== undefined ? { drill_commits_lost: report.rpo.commits } : {}),
  });
  if (json) ctx.say(JSON.stringify(report, null, 2));
  else {
    ctx.say(report.postMortem.summary);
    for (const f of report.findings) ctx.say(`  finding: ${f}`);
    ctx.say(`report: ${paths.markdown}`);
  }
  if (!report.ok) throw new VerifyFailedError(what, report.findings);
}
