/** `coffer wal-fetch` (restore_command) and the hidden background `wal-prefetch`; exit statuses as PostgreSQL reads them. */
import { spawn } from 'node:child_process';
import { neverArchived, recoveryMode, restoreCommandStatus, walFetchScope, walFetch, walPrefetch, CofferError, fromSystemError } from '@coffer/engine';
import { intOption, repoArgs, stanzaOf, COFFER_BIN, CommandExit, type CliContext } from '../context.js';

export function register(ctx: CliContext): void {
  const { program, io, globals, openWalRepo } = ctx;
  program
    .command('wal-fetch <name> <dest>')
    .description("restore an archived WAL file: PostgreSQL's restore_command ('coffer wal-fetch %f %p'); exits 1 when it is not archived, 255 when it cannot tell (archive recovery stops instead of ending short)")
    .option('--prefetch <n>', 'fetch the segments after this one into a spool in the background, N at once (0: no prefetching)', intOption('--prefetch', 0, 64), 2)
    .option('--queue-max <MiB>', 'the prefetcher keeps up to this much WAL spooled ahead of recovery, and follows it until the archive ends', intOption('--queue-max', 1, 65_536), 128)
    .option('--spool <dir>', 'prefetch spool (default: .coffer-spool beside <dest>)')
    .option('--system-id <id>', "the cluster's system identifier (default: global/pg_control of the data directory it runs in)")
    .option('--socket <path>', 'fetch from the coffer process serving this Unix socket (a verify sandbox, which reaches no repository itself)')
    .action(async (name: string, dest: string, o: { prefetch: number; queueMax: number; spool?: string; systemId?: string; socket?: string }) => {
      // restore_command runs in the data directory: its signal file says how PostgreSQL will read our status.
      const mode = await recoveryMode(process.cwd());
      // Answered before the repository is opened: that is what this call would otherwise cost.
      if (neverArchived(name)) throw new CommandExit(restoreCommandStatus('absent', mode));
      let result;
      try {
        if (o.socket !== undefined) {
          const { fetchWalViaSocket } = await import('@coffer/verify');
          result = { outcome: (await fetchWalViaSocket(o.socket, name, dest)) === 'absent' ? 'absent' : 'archive' };
        } else {
          const repo = await openWalRepo(false);
          const scope = await walFetchScope(repo, stanzaOf(globals(), io.env), o.systemId, process.cwd());
          result = await walFetch(repo, scope, name, dest, {
            ...(o.spool !== undefined ? { spoolDir: o.spool } : {}),
            prefetch: o.prefetch,
            pgdata: process.cwd(),
            // Detached, so PostgreSQL gets this segment now while the next ones are on their way.
            startPrefetcher: (next, spool, s, segmentBytes) => {
              const args = [COFFER_BIN, ...repoArgs(globals(), io.env), 'wal-prefetch', '--spool', spool, '--system-id', s.systemIdentifier, '--parallel', String(o.prefetch), '--queue-max', String(o.queueMax), '--segment-bytes', String(segmentBytes), ...next];
              spawn(process.execPath, args, { detached: true, stdio: 'ignore', env: io.env }).unref();
            },
          });
        }
      } catch (e) {
        const typed = e instanceof CofferError ? e : fromSystemError(e);
        const reason = typed ? typed.message : `unexpected error: ${(e as Error)?.stack ?? String(e)}`;
        const status = restoreCommandStatus('failed', mode);
        throw new CommandExit(status, `${reason}${status === 1 ? ' (standby: PostgreSQL will ask again)' : ' (recovery stops here rather than end short of the archive; fix the cause and start the server again)'}`);
      }
      if (result.outcome === 'absent') throw new CommandExit(restoreCommandStatus('absent', mode));
    });

  program
    .command('wal-prefetch <names...>', { hidden: true })
    .requiredOption('--spool <dir>', 'spool directory')
    .requiredOption('--system-id <id>', "the cluster's system identifier")
    .option('--parallel <n>', 'segments fetched at once', intOption('--parallel', 1, 64), 2)
    .option('--queue-max <MiB>', 'follow recovery, keeping up to this much WAL spooled ahead of it (0: fetch the names given, then stop)', intOption('--queue-max', 0, 65_536), 0)
    .option('--segment-bytes <n>', "the cluster's WAL segment size", intOption('--segment-bytes', 1 << 20, 1 << 30), 16 << 20)
    .action(async (names: string[], o: { spool: string; systemId: string; parallel: number; queueMax: number; segmentBytes: number }) => {
      const repo = await openWalRepo(false);
      const scope = await walFetchScope(repo, stanzaOf(globals(), io.env), o.systemId, process.cwd());
      await walPrefetch(repo, scope, names, o.spool, { parallel: o.parallel, segmentBytes: o.segmentBytes, ...(o.queueMax > 0 ? { queueBytes: o.queueMax * 1024 * 1024 } : {}) });
    });
}
