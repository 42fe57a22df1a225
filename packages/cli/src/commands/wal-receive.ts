/** `coffer wal-receive`: stream WAL over the replication protocol into the repository; until SIGTERM. */
import { CofferError, formatLsn, receiveWal, type WalReceiverProgress } from '@coffer/engine';
import { intOption, secondsOption, stanzaOf, type CliContext } from '../context.js';

/** Failures another connection may cure (the server restarting, the network): the receiver reconnects after them. */
const RETRYABLE = new Set(['COFFER_POSTGRES_ERROR', 'COFFER_STORE_UNAVAILABLE', 'COFFER_LEASE_LOST', 'COFFER_REPOSITORY_BUSY']);

export function register(ctx: CliContext): void {
  const { program, io, globals, openWalRepo, say, audit } = ctx;
  program
    .command('wal-receive')
    .description('stream WAL from the server over a physical replication slot into the repository, what was received made durable every --flush-interval (each segment archived whole as it completes) and only then reported flushed (the slot keeps the rest); reconnects after failures; SIGTERM or SIGINT: stop, nothing lost')
    .option('--db <connstring>', 'libpq connection string of the server to stream from (default: PGHOST, PGPORT, PGUSER, PGPASSWORD); the role needs REPLICATION')
    .option('--slot <name>', 'physical replication slot (created when missing)', 'coffer')
    .option('--status-interval <seconds>', 'tell the server where the receiver stands at least this often', intOption('--status-interval', 1, 3600), 10)
    .option('--max-retry-wait <seconds>', 'longest wait between reconnections (doubling from 1 s)', intOption('--max-retry-wait', 1, 3600), 30)
    .option('--flush-interval <seconds>', "make what was received of the open segment durable (and report it flushed) this often: the RPO", secondsOption('--flush-interval', 0.05, 3600), 1)
    .option('--flush-bytes <MiB>', 'or sooner, once this many MiB wait', intOption('--flush-bytes', 1, 1024), 4)
    .option('--synchronous', "flush every message as soon as the previous flush is done: for a receiver named in synchronous_standby_names (commits then wait for the repository; name it with another standby, ANY 1 (standby, coffer))")
    .option('--key-check <seconds>', 'look for a newer data key this often; after key rotate the receiver opens the repository again and seals with it', secondsOption('--key-check', 0.1, 86_400), 60)
    .action(async (o: { db?: string; slot: string; statusInterval: number; maxRetryWait: number; flushInterval: number; flushBytes: number; synchronous?: boolean; keyCheck: number }) => {
      let repo = await openWalRepo(true);
      const stop = new AbortController();
      const handlers: [NodeJS.Signals, () => void][] = [
        ['SIGTERM', () => stop.abort()],
        ['SIGINT', () => stop.abort()],
      ];
      for (const [s, h] of handlers) process.on(s, h);
      const archived: string[] = [];
      // How long each flush took to become durable: with the interval, what the RPO is made of.
      const flushMs: number[] = [];
      const onProgress = (p: WalReceiverProgress) => {
        if (p.event === 'flushed') {
          if (p.writeMs !== undefined && flushMs.length < 1_000_000) flushMs.push(p.writeMs);
          return;
        }
        if (p.archived) archived.push(p.archived);
        if (p.archived) say(`archived ${p.archived}; durable to ${formatLsn(p.durable)}`);
        else {
          say(`streaming timeline ${p.timeline} of system ${p.systemIdentifier} from ${formatLsn(p.start)} (slot ${o.slot})`);
          if (p.gapFrom !== undefined) io.stderr.write(`coffer: warning: the slot no longer holds WAL from ${formatLsn(p.gapFrom)} to ${formatLsn(p.start)}; archive_command must archive it\n`);
        }
      };
      let wait = 1;
      try {
        while (!stop.signal.aborted) {
          // A rotated data key ends this stream cleanly (what was received made durable first), and the next one
          // seals with the new key: a receiver runs for months, and must not seal with a key rotated out.
          const rotated = new AbortController();
          const keyCheck = setInterval(() => void repo.keyRing.rotatedSince().then((r) => r && rotated.abort(), () => undefined), o.keyCheck * 1000);
          try {
            const r = await receiveWal(repo, { ...(o.db ? { connection: o.db } : {}), stanza: stanzaOf(globals(), io.env), slot: o.slot, statusIntervalMs: o.statusInterval * 1000, flushIntervalMs: o.flushInterval * 1000, flushBytes: o.flushBytes * 1024 * 1024, synchronous: !!o.synchronous, signal: AbortSignal.any([stop.signal, rotated.signal]), onProgress });
            wait = 1;
            if (r.reason === 'stopped' && !stop.signal.aborted && rotated.signal.aborted) {
              say(`the repository has a newer data key (key rotate): opening it again, durable to ${formatLsn(r.durable)}`);
              repo = await openWalRepo(true);
              continue;
            }
            if (r.reason === 'stopped') break;
            say(`the server ended the stream at ${formatLsn(r.durable)}; reconnecting`);
          } catch (e) {
            if (!(e instanceof CofferError) || !RETRYABLE.has(e.code)) throw e;
            io.stderr.write(`coffer: ${e.message}; reconnecting in ${wait} s\n`);
            await new Promise<void>((resolve) => {
              const t = setTimeout(resolve, wait * 1000);
              stop.signal.addEventListener('abort', () => (clearTimeout(t), resolve()), { once: true });
            });
            wait = Math.min(o.maxRetryWait, wait * 2);
          } finally {
            clearInterval(keyCheck);
          }
        }
      } finally {
        for (const [s, h] of handlers) process.removeListener(s, h);
        const flushes = flushTimes(flushMs);
        if (flushes) say(`flushed ${flushes.count} times: p50 ${flushes.p50.toFixed(1)} ms, p99 ${flushes.p99.toFixed(1)} ms, longest ${flushes.max.toFixed(1)} ms`);
        // One audit record for the run (the segments it archived, its flush times), when it ends.
        audit({ slot: o.slot, segments: archived.length, ...(archived.length ? { first: archived[0]!, last: archived.at(-1)! } : {}), ...(flushes ? { flushes: flushes.count, flushP99Ms: Math.round(flushes.p99 * 10) / 10 } : {}) });
      }
    });
}

/** Count, median, 99th percentile and longest of the flush times; undefined when there were none. */
function flushTimes(ms: number[]): { count: number; p50: number; p99: number; max: number } | undefined {
  if (ms.length === 0) return undefined;
  const sorted = [...ms].sort((a, b) => a - b);
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
  return { count: sorted.length, p50: at(0.5), p99: at(0.99), max: sorted.at(-1)! };
}
