/**
 * The RPO as the tracker works it out, against a simulated server whose
 * every write and archive is known: transactions (which take a transaction
 * id and write WAL), WAL that holds no one's data (snapshots, checkpoints),
 * and archive_command catching up. The figure is never below the truth (the
 * age of the oldest transaction not in the repository); an idle server whose
 * data is all archived is at 0, however long it stays idle.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { RpoTracker } from '@coffer/agent';

const SEG = 16 * 1024 * 1024;

type Event = { kind: 'commit'; bytes: number } | { kind: 'noise'; bytes: number } | { kind: 'archive' } | { kind: 'switch' } | { kind: 'idle' };

const event: fc.Arbitrary<Event> = fc.oneof(
  fc.record({ kind: fc.constant('commit' as const), bytes: fc.integer({ min: 100, max: 3 * SEG }) }),
  fc.record({ kind: fc.constant('noise' as const), bytes: fc.integer({ min: 24, max: 200 }) }),
  fc.constant({ kind: 'archive' as const }),
  fc.constant({ kind: 'switch' as const }),
  fc.constant({ kind: 'idle' as const }),
);

describe('RpoTracker', () => {
  it('is never below the age of the oldest transaction not in the repository', () => {
    fc.assert(
      fc.property(fc.array(event, { maxLength: 80 }), fc.integer({ min: 1, max: 5 }), fc.boolean(), (events, every, reads) => {
        const tracker = new RpoTracker();
        let lsn = BigInt(SEG);
        let xid = 1000n;
        let archived = BigInt(SEG);
        const commits: { at: number; end: bigint }[] = [];
        let t = 0;
        tracker.observe(t, lsn, xid, archived, SEG);
        events.forEach((e, i) => {
          t += 1000;
          if (e.kind === 'commit') {
            lsn += BigInt(e.bytes);
            xid += 1n;
            commits.push({ at: t, end: lsn });
          } else if (e.kind === 'noise') lsn += BigInt(e.bytes);
          else if (e.kind === 'switch') lsn = lsn % BigInt(SEG) === 0n ? lsn : lsn + BigInt(SEG) - (lsn % BigInt(SEG));
          // archive_command catches up on complete segments only.
          else if (e.kind === 'archive') archived = lsn - (lsn % BigInt(SEG));
          if (i % every !== 0) return;
          const oldest = commits.find((c) => c.end > archived);
          // What reading the WAL past the archived end finds: no transaction's record there.
          const settled = reads && lsn > archived && oldest === undefined;
          const f = tracker.observe(t, lsn, xid, archived, SEG, undefined, settled);
          const truth = oldest ? (t - oldest.at) / 1000 : 0;
          expect(f.rpoSeconds).toBeGreaterThanOrEqual(truth);
          if (settled) expect(f.rpoSeconds).toBe(0);
          expect(f.unarchivedBytes).toBe(lsn > archived ? Number(lsn - archived) : 0);
          if (lsn <= archived) expect(f.rpoSeconds).toBe(0);
        });
      }),
      { numRuns: 300 },
    );
  });

  it('an idle server, all of its data archived, is at 0 however much housekeeping WAL follows', () => {
    const tracker = new RpoTracker();
    const start = BigInt(SEG);
    tracker.observe(0, start, 10n, start, SEG);
    // A transaction, then the segment switched and archived: the position sits at the new segment's start.
    tracker.observe(1000, start + 5000n, 11n, start, SEG);
    expect(tracker.observe(2000, 2n * start, 11n, start, SEG).rpoSeconds).toBe(2);
    expect(tracker.observe(3000, 2n * start, 11n, 2n * start, SEG).rpoSeconds).toBe(0);
    // Snapshots and checkpoints for an hour: no transaction, nothing at risk.
    for (let s = 4; s < 3600; s += 15) expect(tracker.observe(s * 1000, 2n * start + BigInt(s), 11n, 2n * start, SEG).rpoSeconds).toBe(0);
    // A transaction after all: from the last sample before it.
    expect(tracker.observe(3_700_000, 2n * start + 9000n, 12n, 2n * start, SEG).rpoSeconds).toBeCloseTo(3_700 - 3_589, 0);
  });

  it('after a switch that follows a transaction within one sample, housekeeping WAL is 0 once read and found free of transactions', () => {
    const s = BigInt(SEG);
    const run = (settle: boolean) => {
      const tracker = new RpoTracker();
      tracker.observe(0, s + 100n, 10n, s, SEG);
      // Between two samples: a transaction (id 10), the switch, the segment archived, a checkpoint record after it.
      const figures = [tracker.observe(1000, 2n * s + 120n, 11n, 2n * s, SEG, undefined, settle)];
      for (let t = 2000; t <= 60_000; t += 1000) figures.push(tracker.observe(t, 2n * s + 120n + BigInt(t), 11n, 2n * s, SEG));
      return figures.map((f) => f.rpoSeconds);
    };
    // Unread: the transaction might be past the end — counted from the last sample before it, never below the truth.
    expect(run(false).at(-1)).toBe(60);
    // Read: nothing at risk, and it stays so while no new transaction id appears.
    expect(run(true).every((r) => r === 0)).toBe(true);
  });

  it('counts the archive lag from the moment a segment completed, whatever it holds', () => {
    const tracker = new RpoTracker();
    const s = BigInt(SEG);
    tracker.observe(0, s, 1n, s, SEG);
    tracker.observe(10_000, s + 100n, 1n, s, SEG);
    const f = tracker.observe(20_000, 2n * s + 100n, 1n, s, SEG);
    expect(f.rpoSeconds).toBe(0);
    expect(f.archiveLagSeconds).toBe(10);
  });
});
