/**
 * Incremental read-data: the packs no verification proved in the last
 * `maxAgeDays` (new ones, and old ones whose turn came), plus a random
 * sample of the rest, read whole and proved (`verify-pack.ts`); the ledger
 * remembers what was proved and when. A nightly run reads what changed since
 * the night before and a slice of the rest, never the whole repository again
 * (restic's `--read-data-subset`, made continuous); over `maxAgeDays` every
 * pack is read at least once, and the sample spreads those reads out.
 */
import pLimit from 'p-limit';
import { CofferError, MissingObjectError } from '../errors.js';
import { PACK_PREFIX } from '../format/keys-layout.js';
import { SHA256_HEX } from '../bytes.js';
import { readPackLedger, writePackLedger } from '../repository/pack-ledger.js';
import type { Repository } from '../repository/repository.js';
import { verifyPack } from './verify-pack.js';

export interface IncrementalReadOptions {
  /** A pack proved longer ago than this is due again (default 30 days). */
  maxAgeDays?: number;
  /** Percentage of the packs not due that are read anyway, chosen at random (default 2). */
  samplePercent?: number;
  /** Packs read at once (default 4). */
  concurrency?: number;
  now?: Date;
  random?: () => number;
  /** Write what was proved into the ledger (default true). */
  record?: boolean;
}

export interface IncrementalReadReport {
  /** Packs in the repository, and their bytes. */
  packs: number;
  packBytes: number;
  /** Packs read (due + sampled), and their bytes. */
  read: number;
  bytesRead: number;
  due: number;
  sampled: number;
  /** Chunks decrypted and checked against their id. */
  chunks: number;
  /** Each damaged pack, named. */
  problems: string[];
  seconds: number;
  /** The ledger object written, when one was. */
  ledger?: string;
}

export async function readDataIncrementally(repo: Repository, options: IncrementalReadOptions = {}): Promise<IncrementalReadReport> {
  const t0 = performance.now();
  const now = options.now ?? new Date();
  const random = options.random ?? Math.random;
  const maxAge = (options.maxAgeDays ?? 30) * 86400;
  const share = (options.samplePercent ?? 2) / 100;
  const listed = (await repo.objects.list(PACK_PREFIX)).map((o) => ({ sha: o.key.slice(o.key.lastIndexOf('/') + 1), size: o.size })).filter((p) => SHA256_HEX.test(p.sha));
  const ledger = await readPackLedger(repo);
  const cutoff = Math.floor(now.getTime() / 1000) - maxAge;
  const due = listed.filter((p) => (ledger.proved.get(p.sha) ?? -Infinity) < cutoff);
  const sampled = listed.filter((p) => (ledger.proved.get(p.sha) ?? -Infinity) >= cutoff && random() < share);
  const report: IncrementalReadReport = {
    packs: listed.length,
    packBytes: listed.reduce((n, p) => n + p.size, 0),
    read: 0,
    bytesRead: 0,
    due: due.length,
    sampled: sampled.length,
    chunks: 0,
    problems: [],
    seconds: 0,
  };
  const proved: string[] = [];
  const limit = pLimit(Math.max(1, options.concurrency ?? 4));
  await Promise.all(
    [...due, ...sampled].map((p) =>
      limit(async () => {
        try {
          report.chunks += await verifyPack(repo, p.sha, []);
          proved.push(p.sha);
        } catch (e) {
          // Deleted since the listing (a collection ran): gone, not damaged.
          if (e instanceof MissingObjectError) return;
          if (!(e instanceof CofferError)) throw e;
          report.problems.push(e.message);
        }
        report.read++;
        report.bytesRead += p.size;
      }),
    ),
  );
  if (options.record !== false && proved.length > 0) {
    // A repository this run may not write to (read-only credentials) still gets its report.
    const written = await writePackLedger(repo, ledger, proved, now, new Set(listed.map((p) => p.sha))).catch((e: unknown) => {
      if (!(e instanceof CofferError)) throw e;
      return undefined;
    });
    if (written) report.ledger = written;
  }
  report.seconds = (performance.now() - t0) / 1000;
  return report;
}
