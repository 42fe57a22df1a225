/**
 * `coffer wal-archiver <pg_wal>`: archives each file as soon as PostgreSQL
 * marks it ready, and leaves the note that lets archive_command
 * (`coffer wal-push`) confirm it without opening the repository. The first
 * full `wal-push` that finds other files waiting starts it (detached, with
 * the same options and environment); it stops after `--idle-exit` with
 * nothing to archive, when its pg_wal goes away, or on SIGTERM / SIGINT.
 */
import { mkdir, open, readFile, unlink } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { archiveReadyWal, InvalidArgumentError } from '@coffer/engine';
import { intOption, leaseOptions, secondsOption, stanzaOf, type CliContext } from '../context.js';
import { archiverAlive, archiverFile, callFile, commandIdentity, heartbeat, pruneWalAcks, writeWalAck, writeWalError } from '../wal-ack.js';
import { existsSync, statSync } from 'node:fs';

export function register(ctx: CliContext): void {
  const { program, io, globals, openWalRepo, say, audit } = ctx;
  program
    .command('wal-archiver <pg_wal>')
    .description("archive WAL files as PostgreSQL marks them ready (archive_status/*.ready), so that archive_command ('coffer wal-push %p', same options) only confirms them; started by wal-push when files wait")
    .option('--parallel <n>', 'files archived at once', intOption('--parallel', 1, 16), 2)
    .option('--idle-exit <seconds>', 'stop after this long with nothing to archive (0: run until stopped)', intOption('--idle-exit', 0, 86_400), 300)
    .option('--ahead <n>', 'archive at most N files past the one PostgreSQL called wal-push for last (0: every file marked ready, calls or not)', intOption('--ahead', 0, 1024), 4)
    .option('--key-check <seconds>', 'look for a newer data key this often, and stop when there is one (key rotate): the next call starts an archiver that seals with it', secondsOption('--key-check', 0.1, 86_400), 60)
    .action(async (dir: string, o: { parallel: number; idleExit: number; ahead: number; keyCheck: number }) => {
      const walDir = resolve(dir);
      if (!statSync(join(walDir, 'archive_status'), { throwIfNoEntry: false })?.isDirectory()) throw new InvalidArgumentError('<pg_wal>', `${walDir} has no archive_status directory: name the server's pg_wal`);
      // The notes it leaves must be the ones wal-push, called with the same options, reads back.
      const at = process.argv.indexOf('wal-archiver');
      const identity = commandIdentity(process.argv.slice(2, at), io.env, process.cwd());
      const beat = archiverFile(walDir, identity);
      // Where each wal-push call writes its file's name: the archiver's window follows it.
      const calls = callFile(walDir, identity);
      // The wal-push call that started this process wrote its heartbeat file for it (with this pid).
      const mine = await readFile(beat, 'utf8').then((t) => Number(t.split('\n')[0]) === process.pid, () => false);
      if (!mine) {
        if (await archiverAlive(beat)) {
          say(`an archiver for ${walDir} with these options runs already`);
          return;
        }
        await mkdir(join(walDir, '.coffer-ack'), { recursive: true, mode: 0o700 });
        await unlink(beat).catch(() => undefined);
        const fh = await open(beat, 'wx', 0o600).catch((e: NodeJS.ErrnoException) => {
          if (e.code === 'EEXIST') return undefined;
          throw e;
        });
        // Another one started between the look and the create.
        if (!fh) return;
        await fh.writeFile(`${process.pid}\n`);
        await fh.close();
      }
      const stop = new AbortController();
      // Its heartbeat file gone or another's: this pg_wal has another archiver now (or is another pg_wal).
      const stopBeat = heartbeat(beat, () => stop.abort());
      const repo = await openWalRepo(true).catch(async (e: unknown) => {
        await stopBeat();
        throw e;
      });
      const handlers: [NodeJS.Signals, () => void][] = [
        ['SIGTERM', () => stop.abort()],
        ['SIGINT', () => stop.abort()],
      ];
      for (const [s, h] of handlers) process.on(s, h);
      let pruned = Date.now();
      try {
        const r = await archiveReadyWal(repo, walDir, {
          parallel: o.parallel,
          idleExitMs: o.idleExit * 1000,
          keyCheckMs: o.keyCheck * 1000,
          stanza: stanzaOf(globals(), io.env),
          ...leaseOptions(globals(), io.env),
          signal: stop.signal,
          ...(o.ahead > 0 ? { window: { ahead: o.ahead, callFile: calls, lastCall: () => readFile(calls, 'utf8').then((t) => t.trim(), () => undefined) } } : {}),
          // A file a full wal-push archived ahead has its note already.
          skip: (name) => existsSync(join(walDir, '.coffer-ack', name)),
          onDurable: async (f) => {
            await writeWalAck(join(walDir, f.name), { identity, name: f.name, sha256: f.sha256, systemIdentifier: f.systemIdentifier, ...(f.identity ? { file: f.identity } : {}) });
            if (Date.now() - pruned > 60_000) {
              pruned = Date.now();
              await pruneWalAcks(join(walDir, f.name));
            }
          },
          onFailure: async (name, e, retryInMs) => {
            io.stderr.write(`coffer: wal-archiver: ${name}: ${e.message} (trying again in ${Math.round(retryInMs / 1000)} s)\n`);
            await writeWalError(join(walDir, name), e.message).catch(() => undefined);
          },
        });
        const why = { idle: 'idle', gone: `${walDir} is gone`, aborted: 'stopped', rotated: 'the repository has a newer data key (key rotate): the next call starts an archiver that seals with it' }[r.reason];
        say(`archived ${r.archived} files (${r.failures} failures); ${why}`);
        audit({ walDir, archived: r.archived, failures: r.failures, reason: r.reason });
      } finally {
        for (const [s, h] of handlers) process.removeListener(s, h);
        await stopBeat();
      }
    });
}
