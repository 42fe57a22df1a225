/** `coffer wal-push` (archive_command): exit 0 only once the WAL file is durable in the repository. */
import { join, dirname } from 'node:path';
import { walPush } from '@coffer/engine';
import { intOption, leaseOptions, stanzaOf, type CliContext } from '../context.js';
import { dropWalAck, pruneWalAcks, walPushCall, writeWalAck } from '../wal-ack.js';

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
      // Notes for the files archived ahead: PostgreSQL's call for each is then answered without opening the
      // repository (see wal-ack.ts). Only for a plain command line, which the entry point can read back.
      const call = walPushCall(process.argv.slice(2), io.env, process.cwd());
      if (!call) return;
      await dropWalAck(call.path);
      const ahead = r.durable.filter((d) => d.name !== r.name);
      await Promise.all(ahead.map((d) => writeWalAck(join(dirname(call.path), d.name), { identity: call.identity, name: d.name, sha256: d.sha256, systemIdentifier: d.systemIdentifier }).catch(() => undefined)));
      if (ahead.length > 0) await pruneWalAcks(call.path);
    });
}
