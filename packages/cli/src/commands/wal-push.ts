/** `coffer wal-push` (archive_command): exit 0 only once the WAL file is durable in the repository. */
import { dirname, join } from 'node:path';
import { walPush } from '@coffer/engine';
import { intOption, leaseOptions, stanzaOf, type CliContext } from '../context.js';
import { archiverAlive, archiverFile, dropWalAck, noteCall, pruneWalAcks, walPushCall, writeWalAck } from '../wal-ack.js';

export function register(ctx: CliContext): void {
  const { program, io, globals, openWalRepo, audit } = ctx;
  program
    .command('wal-push <path>')
    .description("archive a WAL file: PostgreSQL's archive_command ('coffer wal-push %p')")
    .option('--ahead <n>', 'archive up to N other .ready files ahead, in parallel (0: none)', intOption('--ahead', 0, 64), 4)
    .option(
      '--archiver-idle <seconds>',
      'archive ahead in the background: a coffer wal-archiver started by the first call archives each file as soon as it is marked ready, and stops after this long with nothing to archive; 0: within this call',
      intOption('--archiver-idle', 0, 86_400),
      300,
    )
    .action(async (path: string, o: { ahead: number; archiverIdle: number }) => {
      // Notes for what is archived ahead are read back by the entry point (see wal-ack.ts): only for a plain command line.
      const call = walPushCall(process.argv.slice(2), io.env, process.cwd());
      if (call) await noteCall(call);
      // The entry point started the archiver (or found it running) when this file is marked ready: it archives the
      // rest, as they are marked. Without one (a call by hand, a file not marked), this call archives ahead itself.
      const background = call !== undefined && o.ahead > 0 && o.archiverIdle > 0 && (await archiverAlive(archiverFile(dirname(call.path), call.identity)));
      const repo = await openWalRepo(true);
      const r = await walPush(repo, path, { ahead: background ? 0 : o.ahead, stanza: stanzaOf(globals(), io.env), ...leaseOptions(globals(), io.env) });
      audit({ segment: r.name, outcome: r.outcome, ahead: r.ahead });
      if (!call) return;
      await dropWalAck(call.path);
      if (background) return;
      const ahead = r.durable.filter((d) => d.name !== r.name);
      await Promise.all(ahead.map((d) => writeWalAck(join(dirname(call.path), d.name), { identity: call.identity, name: d.name, sha256: d.sha256, systemIdentifier: d.systemIdentifier }).catch(() => undefined)));
      if (ahead.length > 0) await pruneWalAcks(call.path);
    });
}
