/**
 * The recovery point objective as it stands: how old the oldest write is
 * that the repository does not hold yet — what a disaster now would lose.
 * PostgreSQL does not say when a WAL byte was written, so the tracker samples
 * the server over time: its write position, and the next transaction id.
 *
 * - Nothing past the archived end: 0.
 * - Bytes past it, but no transaction id handed out since the last sample
 *   that was within it: 0 as well. An idle server keeps writing a little WAL
 *   (running-transaction snapshots, checkpoints) that holds no one's data, and
 *   PostgreSQL's own archive_timeout ignores it for the same reason; an idle
 *   server is not a breach.
 * - Bytes past it, and new transaction ids, but the caller read those bytes
 *   and found no transaction's record in them (`settled`): 0. Without that
 *   reading, housekeeping WAL written right after a segment switch that
 *   follows a transaction within one sample keeps the figure at the time
 *   since that sample until the next switch.
 * - Otherwise: the time since the last sample before the first transaction
 *   that is not archived. Never less than the truth, at most one sampling
 *   interval more.
 *
 * The archive lag counts bytes alone: a complete segment that has not reached
 * the repository is an archiving problem whatever it holds.
 */
export interface RpoFigures {
  /** Age in seconds of the oldest write not yet in the repository (0: none). */
  rpoSeconds: number;
  /** Age in seconds of the oldest byte of a *complete* segment not yet in the repository: archiving lags. */
  archiveLagSeconds: number;
  /** Bytes written past the end of what the repository holds. */
  unarchivedBytes: number;
}

interface Sample {
  at: number;
  lsn: bigint;
  xid: bigint;
}

export class RpoTracker {
  private samples: Sample[] = [];

  /**
   * Takes a sample: at `at` (ms since the epoch) the server had written up
   * to `lsn` and would hand out transaction id `nextXid` next, and the
   * repository held WAL up to `archivedEnd`. `floor` (ms): before the tracker
   * saw a sample within the archived end, the latest time known to be no
   * later than the oldest unarchived write (when the last segment was
   * archived) — used only until a sample says more. `settled`: the WAL past
   * the archived end was read at this sample and holds no record of any
   * transaction before `nextXid` (and none was running).
   */
  observe(at: number, lsn: bigint, nextXid: bigint, archivedEnd: bigint, segmentBytes: number, floor?: number, settled = false): RpoFigures {
    const last = this.samples[this.samples.length - 1];
    if (last && at < last.at) at = last.at;
    // Settled: as if the position had been seen at the archived end with this next id.
    if (settled) this.samples = [{ at, lsn: archivedEnd, xid: nextXid }];
    this.samples.push({ at, lsn, xid: nextXid });
    // Only the newest sample within the archived end matters among the older ones.
    let base = -1;
    for (let i = this.samples.length - 1; i >= 0; i--) {
      if (this.samples[i]!.lsn <= archivedEnd) {
        base = i;
        break;
      }
    }
    if (base > 0) this.samples = this.samples.slice(base);
    const anchor = base >= 0 ? this.samples[0] : undefined;
    const unseen = () => Math.min(this.samples[0]!.at, floor ?? Infinity);
    const seg = BigInt(segmentBytes);
    const completeEnd = archivedEnd + seg - (archivedEnd % seg);
    let lagSince: number | undefined;
    for (const s of this.samples) if (s.lsn <= completeEnd) lagSince = s.at;
    let rpo = 0;
    if (lsn > archivedEnd) {
      if (!anchor) rpo = (at - unseen()) / 1000;
      else if (nextXid !== anchor.xid) {
        // The last sample before a new transaction id appeared.
        let since = anchor.at;
        for (const s of this.samples) if (s.xid === anchor.xid) since = s.at;
        rpo = (at - since) / 1000;
      }
    }
    return {
      rpoSeconds: Math.max(0, rpo),
      archiveLagSeconds: lsn > completeEnd ? Math.max(0, (at - (lagSince ?? unseen())) / 1000) : 0,
      unarchivedBytes: lsn > archivedEnd ? Number(lsn - archivedEnd) : 0,
    };
  }
}
