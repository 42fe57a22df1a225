/**
 * `coffer wal-end`: where the stanza's WAL of a timeline ends in the
 * repository — whole segments, and streamed prefixes past them. A failover
 * guard asks before promoting (its standby replays up to there first); an
 * operator asks before a PITR to the end of the archive.
 */
import { formatLsn, repositoryWalEnd, requireStanza } from '@coffer/engine';
import { intOption, stanzaOf, type CliContext } from '../context.js';

export function register(ctx: CliContext): void {
  const { program, io, globals, openWalRepo, say } = ctx;
  program
    .command('wal-end')
    .description("where the stanza's WAL of a timeline ends in the repository: the newest whole segment's end, and a streamed prefix's (wal-receive) past it")
    .requiredOption('--timeline <n>', 'the timeline', intOption('--timeline', 1, 0xffffffff))
    .option('--system-id <id>', "the cluster's system identifier (default: the stanza's current one)")
    .option('--segment-bytes <n>', "the cluster's WAL segment size (default: the stanza's, else 16 MiB)", intOption('--segment-bytes', 1 << 20, 1 << 30))
    .option('--json', 'print as JSON')
    .action(async (o: { timeline: number; systemId?: string; segmentBytes?: number; json?: boolean }) => {
      const repo = await openWalRepo(false);
      const stanza = stanzaOf(globals(), io.env);
      const current = (await requireStanza(repo, stanza)).history.at(-1)!;
      const systemIdentifier = o.systemId ?? current.systemIdentifier;
      const segmentBytes = o.segmentBytes ?? current.walSegmentSize ?? 16 * 1024 * 1024;
      const end = await repositoryWalEnd(repo, { stanza, systemIdentifier }, o.timeline, segmentBytes);
      const lsn = (x: bigint | undefined) => (x === undefined ? null : formatLsn(x));
      const out = { stanza, systemIdentifier, timeline: o.timeline, segments: lsn(end.segments), streamed: lsn(end.streamed), end: lsn(end.end) };
      if (o.json) return say(JSON.stringify(out, null, 2));
      say(out.end === null ? `no WAL of timeline ${o.timeline} for stanza ${stanza} in the repository` : `timeline ${o.timeline} of stanza ${stanza} ends at ${out.end} (whole segments to ${out.segments ?? 'none'}, streamed to ${out.streamed ?? 'none'})`);
    });
}
