/** `coffer wal-push` (archive_command): exit 0 only once the WAL file is durable in the repository. */
import { walPush } from '@coffer/engine';
import { intOption, leaseOptions, stanzaOf, type CliContext } from '../context.js';

export function register(ctx: CliContext): void {
  const { program, io, globals, openRepo, audit } = ctx;
  program
    .command('wal-push <path>')
    .description("archive a WAL file: PostgreSQL's archive_command ('coffer wal-push %p')")
    .option('--ahead <n>', 'also archive up to N other .ready files, in parallel', intOption('--ahead', 0, 64), 4)
    .action(async (path: string, o: { ahead: number }) => {
      const repo = await openRepo();
      const r = await walPush(repo, path, { ahead: o.ahead, stanza: stanzaOf(globals(), io.env), ...leaseOptions(globals(), io.env) });
      audit({ segment: r.name, outcome: r.outcome, ahead: r.ahead });
    });
}
