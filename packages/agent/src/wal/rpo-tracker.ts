/**
 * The recovery point objective as it stands: how old the oldest WAL byte is
 * that the repository does not hold yet. PostgreSQL does not say when a byte
 * was written, so the tracker samples the server's write position over time:
 * the oldest byte past the archived end was written after the last sample
 * that had not reached past it. The figure is never less than the truth and
 * at most one sampling interval more. A server whose position is at or below
 * the archived end has nothing at risk: 0, however long it has been idle.
 */
export interface RpoFigures {
  /** Age in seconds of the oldest byte not yet in the repository (0: none). */
  rpoSeconds: number;
  /** Age in seconds of the oldest byte of a *complete* segment not yet in the repository: archiving lags. */
  archiveLagSeconds: number;
  /** Bytes written past the archived end. */
  unarchivedBytes: number;
}

interface Sample {
  at: number;
  lsn: bigint;
}

export class RpoTracker {
  private samples: Sample[] = [];

  /**
   * Takes a sample: at `at` (ms since the epoch) the server had written up
   * to `lsn`, and the repository held WAL up to `archivedEnd`. `floor` (ms):
   * before the tracker saw the server reach past the archived end, the
   * latest time known to be no later than the oldest unarchived byte (e.g.
   * when the last segment was archived) — used only until a sample says more.
   */
  observe(at: number, lsn: bigint, archivedEnd: bigint, segmentBytes: number, floor?: number): RpoFigures {
    if (this.samples.length > 0 && at < this.samples[this.samples.length - 1]!.at) at = this.samples[this.samples.length - 1]!.at;
    this.samples.push({ at, lsn });
    // Only the newest sample at or below the archived end matters among the older ones.
    let keep = 0;
    for (let i = this.samples.length - 1; i >= 0; i--) {
      if (this.samples[i]!.lsn <= archivedEnd) {
        keep = i;
        break;
      }
    }
    this.samples = this.samples.slice(keep);
    const age = (boundary: bigint): number => {
      if (lsn <= boundary) return 0;
      let since: number | undefined;
      for (const s of this.samples) if (s.lsn <= boundary) since = s.at;
      // Never seen below the boundary: as old as the first sample, or the floor given, whichever is older.
      since ??= Math.min(this.samples[0]!.at, floor ?? Infinity);
      return Math.max(0, (at - since) / 1000);
    };
    const seg = BigInt(segmentBytes);
    return {
      rpoSeconds: age(archivedEnd),
      // The segment after the archived end is complete once the position is past its end.
      archiveLagSeconds: age(archivedEnd + seg - (archivedEnd % seg)),
      unarchivedBytes: lsn > archivedEnd ? Number(lsn - archivedEnd) : 0,
    };
  }
}
