/** `coffer list`: backups, oldest first, from the catalogue. */
import { type CliContext } from '../context.js';
import { humanBytes } from '../progress.js';

export function register(ctx: CliContext): void {
  const { program, io, globals, openRepo, say } = ctx;
  program
    .command('list')
    .description('list backups, oldest first (with --stanza, that cluster\'s only)')
    .option('--json', 'print as JSON')
    .action(async (o: { json?: boolean }) => {
      const repo = await openRepo();
      // --stanza (or COFFER_STANZA) given: that cluster's backups only.
      const only = globals().stanza ?? io.env.COFFER_STANZA;
      const backups = (await repo.listBackups()).filter((b) => only === undefined || b.stanza === only);
      if (o.json) return say(JSON.stringify(backups.map(({ stats, ...b }) => ({ ...b, files: stats.files, bytes: stats.bytes, newBytes: stats.newBytes, storedBytes: stats.storedBytes, ...(stats.damaged ? { damaged: stats.damaged, damagedBlocks: stats.damagedBlocks } : {}) })), null, 2));
      if (backups.length === 0) return say('no backups');
      say(['ID', 'STARTED', 'KIND', 'STANZA', 'FILES', 'SIZE', 'ADDED', 'TAGS', 'SOURCE'].join('\t'));
      for (const b of backups) say([b.id, b.startedAt, b.kind, b.stanza ?? '-', b.stats.files, humanBytes(b.stats.bytes), humanBytes(b.stats.storedBytes), b.tags.join(',') || '-', `${b.hostname}:${b.source}${b.stats.damagedBlocks ? ` (${b.stats.damagedBlocks} damaged pages)` : ''}`].join('\t'));
    });
}
