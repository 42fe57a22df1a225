/**
 * The long-lived side of archive_command: archives every file PostgreSQL
 * marks ready (`pg_wal/archive_status/<name>.ready`) as soon as the mark
 * appears, a few at once, with the repository opened once — so that when
 * PostgreSQL's archiver calls `coffer wal-push` for a file, it is usually
 * durable already and the call only has to confirm it.
 *
 * It never marks anything done: PostgreSQL alone turns `.ready` into
 * `.done`, after its own call succeeded. What this process archived, it
 * reports through `onDurable` (the CLI leaves the note the short call
 * confirms); what failed, through `onFailure`, and it tries again later
 * (doubling waits, at most a minute) — a file it cannot archive is simply
 * not confirmed, and PostgreSQL's own call archives it or fails loudly.
 * Nothing is ever dropped: while the repository is unreachable the marks
 * and their files stay in pg_wal, which grows (watch `coffer_wal_pg_wal_bytes`
 * and the archive lag).
 */
import { watch, type FSWatcher } from 'node:fs';
import { readdir, stat } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import pLimit from 'p-limit';
import { checkWalName, WAL_SEGMENT } from '../format/wal-record.js';
import type { Repository } from '../repository/repository.js';
import { WalFilePusher, type DurableWal } from './wal.js';
import { readWalFile, sealWalFile, type WalFileIdentity } from './wal-file-read.js';
import { WalSealPool } from './wal-seal-pool.js';
import { WAL_GROUP, type SealedWal } from './wal-seal.js';

export type { WalFileIdentity };

export interface ArchivedReady extends DurableWal {
  outcome: 'archived' | 'already-archived';
  /** Present when the file did not change while it was read (device, inode, size and both times the same before and after). */
  identity?: WalFileIdentity;
}

export interface WalReadyArchiverOptions {
  /** Stanza of the cluster (default `main`). */
  stanza?: string;
  /** Time-to-live of the lease taken while writing (default 60 s). */
  leaseTtlMs?: number;
  /** How long one lease serves before the next write takes a fresh one (default 60 s). */
  leaseCycleMs?: number;
  /** Files pushed at once, and sealers (this thread and workers) at most (default 2). */
  parallel?: number;
  /**
   * Worker threads that read, hash and seal segments. With fewer than
   * `parallel`, this thread seals too, one segment at a time, pausing while
   * the file PostgreSQL calls for next is being pushed; with as many, it seals
   * only until a worker has started (default: `parallel` - 1; 0: this thread
   * alone).
   */
  workers?: number;
  /** Return after this long with nothing to archive (default 5 minutes; 0: never). */
  idleExitMs?: number;
  /** Look at archive_status this often besides when it changes (default 1 s). */
  pollMs?: number;
  /** Files to leave alone (the CLI: those already confirmed by a note). */
  skip?: (name: string) => boolean | Promise<boolean>;
  /**
   * Stay at most `ahead` files past the one PostgreSQL called for last
   * (`lastCall`; history files aside). Tied to the calls, the archiver stops
   * archiving soon after archive_command stops naming it (changed to another
   * command, say) rather than go on as long as WAL is written; without a
   * window it archives every file marked ready. `callFile`, when given, is
   * the file each call writes its name to: watched, the window moves as soon
   * as a call comes (else at the next look, up to `pollMs` later, while the
   * call waits for a file the window held back).
   */
  window?: { ahead: number; lastCall: () => Promise<string | undefined>; callFile?: string };
  /** How often to look for a newer data key, and stop when there is one (default 60 s). */
  keyCheckMs?: number;
  onDurable?: (file: ArchivedReady) => void | Promise<void>;
  onFailure?: (name: string, error: Error, retryInMs: number) => void | Promise<void>;
  signal?: AbortSignal;
}

export interface WalReadyArchiverResult {
  archived: number;
  failures: number;
  /** Why it returned: nothing to do for idleExitMs, the signal, or the pg_wal directory it watched is gone (or replaced). */
  /** `rotated`: the repository has a newer data key (`key rotate`); the next archiver, opening it again, seals with that. */
  reason: 'idle' | 'aborted' | 'gone' | 'rotated';
}

const MAX_RETRY_MS = 60_000;

/** Archives `walDir`'s ready files as they appear, until idle, aborted, or the directory is gone. */
export async function archiveReadyWal(repo: Repository, walDir: string, options: WalReadyArchiverOptions = {}): Promise<WalReadyArchiverResult> {
  const statusDir = join(walDir, 'archive_status');
  const home = await stat(walDir, { bigint: true });
  const pusher = new WalFilePusher(repo, walDir, options);
  const parallel = Math.max(1, options.parallel ?? 2);
  // Pushes (packs, records, notes: I/O) at once; sealing (CPU) runs ahead of them, so that no sealing thread
  // waits for a push to end before it starts on the next file.
  const pushes = pLimit(parallel);
  // This thread seals too: a worker more would only start (a thread, the bundle, zstd: tens of milliseconds of
  // CPU each, taken from the first file's sealing, which the first call waits for) to share the same cores.
  const workers = options.workers ?? parallel - 1;
  const mainSeals = workers < parallel;
  const pool = workers > 0 ? new WalSealPool(repo, workers, () => sealerFree()) : undefined;
  // Files in hand at once: those pushing, one sealing here and one on each worker, and one more for each
  // sealer to take next.
  const inHand = parallel + 2 * workers + 1;
  const idleExitMs = options.idleExitMs ?? 300_000;
  const pollMs = options.pollMs ?? 1000;
  const inFlight = new Set<string>();
  /** Archived by this process and still marked ready: PostgreSQL has yet to call for them. */
  const handled = new Set<string>();
  const retry = new Map<string, { at: number; waitMs: number }>();
  const result: WalReadyArchiverResult = { archived: 0, failures: 0, reason: 'idle' };
  const keyCheckMs = options.keyCheckMs ?? 60_000;
  let keysLookedAt = performance.now();
  let lastWork = performance.now();
  let wake: (() => void) | undefined;
  /** Something changed since this look began (a poke while the look runs must not wait for the next one). */
  let poked = false;
  const poke = () => {
    poked = true;
    wake?.();
  };
  const watchers: FSWatcher[] = [];
  const watchDir = (dir: string, onChange: (file: string | null) => void) => {
    try {
      const w = watch(dir, (_, file) => onChange(file));
      w.on('error', poke);
      watchers.push(w);
    } catch {
      // No watch (the directory is not there yet, or no inotify): polling alone finds the changes.
    }
  };
  watchDir(statusDir, poke);
  const callFile = options.window?.callFile;
  if (callFile) watchDir(dirname(callFile), (file) => file === basename(callFile) && poke());
  options.signal?.addEventListener('abort', poke, { once: true });

  /** A segment is being sealed on this thread. */
  let sealingHere = false;
  /** Files being pushed (their packs, records and notes written). */
  const pushing = new Set<string>();
  /**
   * Whether the oldest file in hand — the one PostgreSQL calls for next, if
   * it does not wait for it already — is being pushed: then this thread
   * starts sealing no other, and pauses one it is sealing, as its steps
   * would hold up every step of that push and of its note.
   */
  const callWaits = () => {
    let oldest: string | undefined;
    for (const n of inFlight) if (oldest === undefined || n < oldest) oldest = n;
    return oldest !== undefined && pushing.has(oldest);
  };
  /** Between the steps of this thread's sealing: the event loop's turn, and no further while a call waits for a push. */
  const giveWay = async () => {
    await new Promise<void>((resolve) => setImmediate(resolve));
    while (callWaits()) await new Promise<void>((resolve) => sealerWaits.push(resolve));
  };
  /** Segments waiting for a sealer (this thread, or a started worker) to be free. */
  let sealerWaits: (() => void)[] = [];
  function sealerFree(): void {
    const waits = sealerWaits;
    sealerWaits = [];
    for (const w of waits) w();
  }
  let readBuffer: Buffer | undefined;
  const archiveOne = async (name: string): Promise<void> => {
    const path = join(walDir, name);
    // A segment is sealed here while this thread seals none; else on a worker thread (or, with none, inline
    // in the push). History and backup history files are small.
    const segment = WAL_SEGMENT.test(name);
    pusher.prepare();
    // Segments go to the first sealer free, oldest first, rather than queue for one: a worker not started yet
    // (a thread, the bundle, zstd: longer than a segment takes to seal) or busy may well be free later than
    // this thread.
    let sealsHere = false;
    while (segment) {
      if (pool?.free) break;
      if (!sealingHere && !callWaits() && (!pool?.warm || mainSeals)) {
        sealsHere = true;
        break;
      }
      await new Promise<void>((resolve) => sealerWaits.push(resolve));
    }
    if (sealsHere) sealingHere = true;
    try {
      let read: { data: Buffer; identity?: WalFileIdentity; sealed?: SealedWal };
      if (sealsHere) {
        // Sealed as it is read, in one buffer read into again for each file, and not in the push: between the
        // reads, pushes and notes of other files go on. The push needs the first page only (its header names
        // the cluster), as from a worker.
        const { sealed, head, identity } = await sealWalFile(repo.objects.codec, path, (readBuffer ??= Buffer.allocUnsafeSlow(WAL_GROUP)), giveWay);
        read = { data: head, sealed, ...(identity ? { identity } : {}) };
        sealsHere = sealingHere = false;
        sealerFree();
        poke();
      } else read = segment && pool ? await pool.seal(path) : await readWalFile(path);
      pushing.add(name);
      try {
        const { outcome, file } = await pushes(() => pusher.push(name, read.data, read.sealed));
        retry.delete(name);
        handled.add(name);
        result.archived++;
        await options.onDurable?.({ ...file, outcome, ...(read.identity ? { identity: read.identity } : {}) });
      } finally {
        pushing.delete(name);
        sealerFree();
      }
    } catch (e) {
      result.failures++;
      const waitMs = Math.min(MAX_RETRY_MS, (retry.get(name)?.waitMs ?? 500) * 2);
      retry.set(name, { at: performance.now() + waitMs, waitMs });
      await options.onFailure?.(name, e instanceof Error ? e : new Error(String(e)), waitMs);
    } finally {
      if (sealsHere) {
        sealingHere = false;
        sealerFree();
      }
      inFlight.delete(name);
      lastWork = performance.now();
      poke();
    }
  };

  try {
    for (;;) {
      poked = false;
      if (options.signal?.aborted) {
        result.reason = 'aborted';
        break;
      }
      const now = await stat(walDir, { bigint: true }).catch(() => undefined);
      if (!now || now.ino !== home.ino || now.dev !== home.dev) {
        result.reason = 'gone';
        break;
      }
      if (performance.now() - keysLookedAt >= keyCheckMs) {
        keysLookedAt = performance.now();
        // A store that does not answer now is the pushes' business; the next look may tell.
        if (await repo.keyRing.rotatedSince().catch(() => false)) {
          result.reason = 'rotated';
          break;
        }
      }
      const ready = await readyNames(statusDir);
      const readySet = new Set(ready);
      const allowed = options.window ? windowOf(ready, options.window.ahead, await options.window.lastCall()) : readySet;
      for (const n of handled) if (!readySet.has(n)) handled.delete(n);
      for (const n of retry.keys()) if (!readySet.has(n)) retry.delete(n);
      let started = 0;
      for (const name of ready) {
        if (!allowed.has(name) || inFlight.has(name) || handled.has(name)) continue;
        const r = retry.get(name);
        if (r && r.at > performance.now()) continue;
        if (await options.skip?.(name)) {
          handled.add(name);
          continue;
        }
        if (inFlight.size >= inHand) break;
        inFlight.add(name);
        started++;
        void archiveOne(name);
      }
      if (started > 0 || inFlight.size > 0) lastWork = performance.now();
      else {
        // Nothing being written: no lease held for garbage collection to wait on.
        await pusher.idle();
        if (idleExitMs > 0 && performance.now() - lastWork >= idleExitMs) break;
      }
      if (poked) continue;
      const waitMs = idleExitMs > 0 && inFlight.size === 0 ? Math.min(pollMs, Math.max(1, idleExitMs - (performance.now() - lastWork))) : pollMs;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(done, waitMs);
        function done() {
          clearTimeout(timer);
          wake = undefined;
          resolve();
        }
        wake = done;
      });
    }
    // Let what was started finish: its file may be waited for by a call right now.
    while (inFlight.size > 0) await new Promise<void>((resolve) => (wake = resolve));
    return result;
  } finally {
    for (const w of watchers) w.close();
    options.signal?.removeEventListener('abort', poke);
    await pusher.close();
    await pool?.close();
  }
}

/** Of the ready files (in order), those the window lets through: history files, those up to the last call, and `ahead` more. */
function windowOf(ready: readonly string[], ahead: number, last: string | undefined): Set<string> {
  const out = new Set<string>();
  let past = 0;
  for (const name of ready) {
    if (name.endsWith('.history') || (last !== undefined && name <= last)) out.add(name);
    else if (past++ < ahead) out.add(name);
  }
  return out;
}

/** The files marked ready, history files first (PostgreSQL's own order: a timeline's history before its segments), then by name. */
async function readyNames(statusDir: string): Promise<string[]> {
  const names = (await readdir(statusDir).catch(() => [] as string[]))
    .filter((n) => n.endsWith('.ready'))
    .map((n) => n.slice(0, -'.ready'.length))
    .filter((n) => {
      try {
        checkWalName(n);
        return true;
      } catch {
        return false;
      }
    });
  const history = (n: string) => (n.endsWith('.history') ? 0 : 1);
  return names.sort((a, b) => history(a) - history(b) || (a < b ? -1 : a > b ? 1 : 0));
}

