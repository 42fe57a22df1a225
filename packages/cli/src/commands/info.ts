/** `coffer info`: backups by lineage (and tier), WAL ranges and gaps, how far back recovery reaches, sizes, leases. */
import { parseTargetTime, repositoryInfo, type RepositoryInfo } from '@coffer/engine';
import type { WrappingKeyState } from '@coffer/engine';
import type { CliContext } from '../context.js';
import { KMS_PROVIDER, kmsProvider } from '../repo-options.js';
import { humanBytes } from '../progress.js';
import { policyOf, registerRetentionOptions, type RetentionFlags } from './expire.js';

export function register(ctx: CliContext): void {
  const { program, openRepo, say, report, io } = ctx;
  const command = program
    .command('info')
    .description('what the repository holds: backups per cluster or source (per retention rule, given the expire options), WAL per timeline with gaps, how far back recovery reaches, size per kind of object, leases held now')
    .option('--reclaimable', 'also count the bytes gc would free now (reads every manifest and WAL record)')
    .option('--json', 'print the report as JSON');
  registerRetentionOptions(command);
  command.action(async (o: RetentionFlags & { reclaimable?: boolean; json?: boolean; now?: string }) => {
    const policy = policyOf(o);
    const repo = await openRepo();
    const info = await repositoryInfo(repo, {
      ...(Object.keys(policy).length > 0 ? { policy } : {}),
      ...(o.now ? { now: new Date(parseTargetTime(o.now, '--now')) } : {}),
      ...(o.reclaimable ? { reclaimable: true } : {}),
    });
    // KMS keys that wrap the data keys: one disabled or scheduled for deletion will stop the repository from opening.
    const kms = kmsProvider(undefined, io.env);
    const kmsKeys = await Promise.all(
      repo.keyRing
        .wrappingKeys()
        .filter((w) => w.provider === KMS_PROVIDER)
        .map(async (w) => ({ keyRef: w.keyRef, state: await kms.keyState!(w.keyRef).catch((e: Error): WrappingKeyState | string => `unknown (${e.message})`) })),
    );
    report({
      ...(kmsKeys.length > 0 ? { kms_keys: kmsKeys.length, kms_keys_unusable: kmsKeys.filter((k) => k.state === 'disabled' || k.state === 'pending-deletion' || k.state === 'unavailable').length } : {}),
      repository_bytes: info.totalBytes,
      repository_pack_bytes: info.objects['data/']?.bytes ?? 0,
      repository_backups: info.lineages.reduce((n, l) => n + l.backups, 0),
      repository_leases: info.leases.length,
      ...(info.reclaimableBytes !== undefined ? { repository_reclaimable_bytes: info.reclaimableBytes } : {}),
    });
    if (o.json) return say(JSON.stringify({ ...info, ...(kmsKeys.length > 0 ? { kmsKeys } : {}) }, null, 2));
    for (const line of describeInfo(info)) say(line);
    for (const k of kmsKeys) say(`KMS key ${k.keyRef}: ${k.state}${k.state === 'enabled' ? '' : ' — the repository will not open with it; enable it, cancel its deletion, or add another wrapping (coffer key add)'}`);
  });
}

export function describeInfo(info: RepositoryInfo): string[] {
  const lines = [`repository ${info.repositoryId} at ${info.location} (format ${info.format}): ${humanBytes(info.totalBytes)}`];
  for (const [prefix, o] of Object.entries(info.objects).sort()) lines.push(`  ${prefix.padEnd(12)} ${String(o.count).padStart(8)} objects ${humanBytes(o.bytes).padStart(10)}`);
  if (info.reclaimableBytes !== undefined) lines.push(`  reclaimable by gc now: ${humanBytes(info.reclaimableBytes)}`);
  if (info.noncurrent) {
    const n = info.noncurrent;
    lines.push(`  noncurrent versions still held by the bucket: ${n.versions} (${humanBytes(n.bytes)}), ${n.deleteMarkers} delete marker(s); the bucket's lifecycle rules free them (coffer bucket setup)`);
  }
  for (const l of info.lineages) {
    lines.push(`${l.lineage}: ${l.backups} backup(s), ${l.oldest} … ${l.newest}${l.recoverableFrom ? `; recovery reaches any point from ${l.recoverableFrom}` : ''}`);
    if (l.byRule) lines.push(`  ${Object.entries(l.byRule).map(([r, n]) => `${r} ${n}`).join(', ')}`);
  }
  for (const w of info.wal) lines.push(`WAL ${w.stanza} system ${w.systemIdentifier} timeline ${w.timeline}: ${w.first} … ${w.last} (${w.segments} segments)${w.gaps.length ? `, GAPS: ${w.gaps.join(', ')}` : ''}`);
  for (const l of info.leases) lines.push(`lease ${l.lease}: ${l.mode}, ${l.purpose}, host ${l.host} pid ${l.pid}`);
  return lines;
}
