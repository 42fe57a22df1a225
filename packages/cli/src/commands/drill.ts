/**
 * `coffer drill`: recovery drills.
 * - `drill restore <backup>` (also `drill <backup>`): restore a backup into a temporary sandbox, re-verify every restored file, clean up.
 * - `drill verify`: the nightly drill — a `verify` run reported against the RPO and RTO targets, with a post-mortem, in a reports directory.
 * - `drill failover`: the weekly drill — a switchover to a standby and back under a probe writer (the policy's failover section; opt-in).
 * - `drill evacuate`: the quarterly drill — region A lost, region B takes over from what it holds (opt-in).
 */
import { Resolver } from 'node:dns/promises';
import { rmSync } from 'node:fs';
import { CorruptObjectError, InvalidArgumentError, parseByteSize, VerifyFailedError } from '@coffer/engine';
import { defaultRestoreCommand, secondsOption, withSandboxCleanup, type CliContext } from '../context.js';
import { humanBytes } from '../progress.js';
import { verifyRunOptions, withVerifyOptions, type VerifyCliOptions } from './verify.js';
import { policyPath, POLICY_OPTION } from './policy.js';
import type { DrillTargets, RecoveryDrillReport } from '@coffer/verify';
import type { Policy } from '@coffer/agent';
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
      const { loadPolicy, failoverSettings } = await import('@coffer/agent');
      const file = policyPath(o, ctx.io.env);
      const policy = await loadPolicy(file);
      const d = policy.drills?.failover;
      if (d?.enabled !== true) throw new InvalidArgumentError('drills.failover.enabled', `${file} does not enable the failover drill: it moves the primary twice, so it runs only where the policy says so (drills.failover.enabled: true)`);
      const settings = failoverSettings(policy, ctx.io.env);
      const norejoin = settings.nodes.filter((n) => !n.rejoin).map((n) => n.name);
      if (norejoin.length > 0) throw new InvalidArgumentError('failover.nodes[].rejoin', `${norejoin.join(', ')} cannot rejoin after a switchover (no rejoin command): the drill would leave it stopped`);
      const { switchover } = await import('@coffer/failover');
      const { DEFAULT_DRILL_TARGETS, failoverDrill } = await import('@coffer/verify');
      const decisions = await openDecisions(settings, ctx.io.env);
      const dns = settings.cutover.dns;
      const report = await failoverDrill({
        cluster: settings.cluster,
        nodes: settings.nodes.map((n) => ({ name: n.name, conninfo: n.conninfo, ...(n.password !== undefined ? { password: n.password } : {}), ...(n.address ? { address: n.address } : {}) })),
        primary: async () => {
          const leader = await decisions.current();
          if (!leader) throw new InvalidArgumentError('failover', `${decisions.location} names no primary (coffer failover init)`);
          return leader.node;
        },
        switchover: async (to) => void (await switchover(decisions, settings.nodes, to, 'drill failover')),
        ...(dns ? { resolve: () => resolveAt(dns.server, dns.port, dns.name) } : {}),
        ...((o.to ?? d.to) ? { to: (o.to ?? d.to)! } : {}),
        ...(d.stepTimeoutSeconds !== undefined ? { stepTimeoutMs: d.stepTimeoutSeconds * 1000 } : {}),
        targets: drillTargets(o, policy.drills, DEFAULT_DRILL_TARGETS),
        onProgress: (line) => ctx.io.stderr.write(`coffer: ${line}\n`),
      });
      await finishDrill(ctx, report, reportsDir(o, policy.drills), o.json, `cluster ${settings.cluster} (failover drill)`);
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
      const { loadPolicy, readSecret, dnsUpdateSettings } = await import('@coffer/agent');
      const env = ctx.io.env;
      const file = policyPath(o, env);
      const policy = await loadPolicy(file);
      const e = policy.drills?.evacuate;
      if (e?.enabled !== true) throw new InvalidArgumentError('drills.evacuate.enabled', `${file} does not enable the evacuation drill: it takes region A away, so it runs only where the policy says so (drills.evacuate.enabled: true)`);
      const cluster = policy.clusters[e.cluster]!;
      const via = o.via ?? (e.standby ? 'promote' : 'restore');
      if (via === 'promote' && !e.standby) throw new InvalidArgumentError('--via', 'promote needs drills.evacuate.standby (region B\'s standby)');
      if (via === 'restore' && !e.restore) throw new InvalidArgumentError('--via', 'restore needs drills.evacuate.restore (dataDir, listen, port)');
      const repo = await openRepo();
      const g = ctx.globals();
      const stanza = g.stanza ?? cluster.stanza ?? e.cluster;
      const { DEFAULT_DRILL_TARGETS, evacuateDrill, postgresAt } = await import('@coffer/verify');
      const { pointName } = await import('@coffer/failover');
      const dns = e.dns ? dnsUpdateSettings(e.dns, 'drills.evacuate.dns', env) : undefined;
      const addresses = e.addresses;
      const serverEnv = Object.fromEntries(Object.entries(env).filter((x): x is [string, string] => x[1] !== undefined));
      const install = e.restore?.pgBin ? postgresAt(e.restore.pgBin) : undefined;
      if (e.restore?.pgBin && !install) throw new InvalidArgumentError('drills.evacuate.restore.pgBin', `${e.restore.pgBin} holds no PostgreSQL server binaries`);
      const report = await evacuateDrill({
        cluster: e.cluster,
        stanza,
        repo,
        primary: { name: e.cluster, conninfo: cluster.connection, ...(cluster.password ? { password: readSecret(cluster.password, `clusters.${e.cluster}.password`, env) } : {}) },
        loseRegion: () => hook(e.loseRegion, 'drills.evacuate.loseRegion'),
        ...(e.restoreRegion ? { restoreRegion: () => hook(e.restoreRegion!, 'drills.evacuate.restoreRegion') } : {}),
        via:
          via === 'promote'
            ? {
                kind: 'promote',
                standby: { name: 'region-b-standby', conninfo: e.standby!.connection, ...(e.standby!.password ? { password: readSecret(e.standby!.password, 'drills.evacuate.standby.password', env) } : {}) },
                ...(e.standby!.rebuild ? { rebuild: () => hook(e.standby!.rebuild!, 'drills.evacuate.standby.rebuild') } : {}),
              }
            : {
                kind: 'restore',
                dataDir: e.restore!.dataDir,
                listen: e.restore!.listen,
                port: e.restore!.port,
                ...(install ? { install } : {}),
                restoreCommand: (scope) => defaultRestoreCommand(g, env, repo.config.repositoryId, scope),
                serverEnv,
              },
        ...(dns && addresses ? { cutover: (to: 'a' | 'b') => pointName(dns, addresses[to]), resolve: () => resolveAt(dns.server, dns.port, dns.name), addressB: addresses.b } : {}),
        ...(o.keep ? { keep: true } : {}),
        ...(e.stepTimeoutSeconds !== undefined ? { stepTimeoutMs: e.stepTimeoutSeconds * 1000 } : {}),
        targets: drillTargets(o, policy.drills, DEFAULT_DRILL_TARGETS),
        onProgress: (line) => ctx.io.stderr.write(`coffer: ${line}\n`),
      });
      await finishDrill(ctx, report, reportsDir(o, policy.drills), o.json, `cluster ${e.cluster} (evacuation drill)`);
    });
}

/** A policy drill's RPO and RTO targets: the command line's, else the policy's, else the seeds'. */
function drillTargets(o: { rpoTarget?: number; rtoTarget?: number }, drills: Policy['drills'], defaults: DrillTargets): DrillTargets {
  return { rpoSeconds: o.rpoTarget ?? drills?.rpoTargetSeconds ?? defaults.rpoSeconds, rtoSeconds: o.rtoTarget ?? drills?.rtoTargetSeconds ?? defaults.rtoSeconds };
}

/** Where a policy drill's reports go: --reports, else the policy's drills.reports, else `drills` here. */
function reportsDir(o: { reports?: string }, drills: Policy['drills']): string {
  return o.reports ?? drills?.reports ?? 'drills';
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

/** Runs an environment's command for a drill (argv, no shell); it must exit 0. */
async function hook(argv: readonly string[], what: string): Promise<void> {
  const { runHook } = await import('@coffer/failover');
  await runHook(argv, {}, 600_000, (detail) => new InvalidArgumentError(what, detail));
}

/** The A records `name` has at the DNS server the cutover updates (asked there, not through the system's resolver and its cache). */
async function resolveAt(server: string, port: number, name: string): Promise<string[]> {
  const resolver = new Resolver({ timeout: 2000, tries: 2 });
  resolver.setServers([server.includes(':') ? `[${server}]:${port}` : `${server}:${port}`]);
  return resolver.resolve4(name).catch(() => []);
}
