/** Retention rules, as pure functions of summaries and a time. */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { decideBackups, decideWal, pitrAnchors, pitrCutoff, type BackupSummary } from '@coffer/engine';

const DAY = 86_400_000;
const NOW = Date.parse('2026-12-01T12:00:00Z');

function summary(t: number, i: number, extra: Partial<BackupSummary> = {}): BackupSummary {
  const label = new Date(t).toISOString().replace(/[-:]/g, '').replace('.', '_');
  const sha = i.toString(16).padStart(64, '0');
  return {
    key: `backups/${label}-${sha}`,
    id: sha.slice(0, 12),
    kind: 'files',
    label,
    startedAt: new Date(t - 1000).toISOString(),
    finishedAt: new Date(t).toISOString(),
    hostname: 'h',
    source: '/data',
    tags: [],
    stats: { files: 0, dirs: 0, symlinks: 0, bytes: 0, unchangedFiles: 0, newChunks: 0, newBytes: 0, storedBytes: 0, skipped: [] },
    ...extra,
  };
}

/** Backups at the given ages (days before NOW), oldest first. */
const ages = fc.uniqueArray(fc.integer({ min: 0, max: 400 * 24 }), { minLength: 1, maxLength: 80 }).map((hours) =>
  hours.sort((a, b) => b - a).map((h, i) => summary(NOW - h * 3_600_000, i)),
);

describe('retention tiers', () => {
  it('keeps exactly what the rules name, and always the newest', () => {
    fc.assert(
      fc.property(ages, fc.integer({ min: 1, max: 5 }), fc.integer({ min: 0, max: 20 }), fc.integer({ min: 0, max: 60 }), fc.integer({ min: 0, max: 12 }), (backups, minCount, hotDays, warmDays, coldMonths) => {
        const d = decideBackups({ minCount, hotDays, warmDays, coldMonths }, { backups, now: new Date(NOW) });
        const newestFirst = [...backups].sort((a, b) => Date.parse(b.finishedAt) - Date.parse(a.finishedAt));
        const expectKeep = new Set<string>();
        newestFirst.slice(0, minCount).forEach((b) => expectKeep.add(b.key));
        const seenDay = new Set<string>();
        const seenWeek = new Set<number>();
        const coldFrom = new Date(NOW);
        coldFrom.setUTCMonth(coldFrom.getUTCMonth() - coldMonths);
        for (const b of newestFirst) {
          const t = Date.parse(b.finishedAt);
          if (NOW - t <= hotDays * DAY) expectKeep.add(b.key);
          const day = b.finishedAt.slice(0, 10);
          if (NOW - t <= warmDays * DAY && !seenDay.has(day)) {
            seenDay.add(day);
            expectKeep.add(b.key);
          }
          const week = Math.floor((t / DAY + 3) / 7);
          if (t >= coldFrom.getTime() && !seenWeek.has(week)) {
            seenWeek.add(week);
            expectKeep.add(b.key);
          }
        }
        expect(new Set(d.filter((x) => x.keep).map((x) => x.key))).toEqual(expectKeep);
        expect(d.find((x) => x.key === newestFirst[0]!.key)!.keep).toBe(true);
        for (const x of d) expect(x.reasons.length).toBeGreaterThan(0);
      }),
      { numRuns: 200 },
    );
  });

  it('keep marks and the newest verified backup outlive the tiers; lineages are judged apart', () => {
    const old = [0, 1, 2].map((i) => summary(NOW - (100 + i) * DAY, i));
    const other = summary(NOW - 200 * DAY, 9, { source: '/other' });
    const d = decideBackups({ hotDays: 1 }, { backups: [...old, other], now: new Date(NOW), marked: new Set([old[2]!.key]), verified: new Set([old[1]!.key, old[2]!.key]) });
    const by = new Map(d.map((x) => [x.key, x]));
    expect(by.get(old[0]!.key)!.keep).toBe(true); // newest of its lineage
    expect(by.get(old[1]!.key)!.reasons).toContain('newest verified');
    expect(by.get(old[2]!.key)!.reasons).toContain('marked keep');
    expect(by.get(other.key)!.reasons).toEqual(['among the newest 1']);
  });

  it('refuses a policy with no rule, and bad numbers, naming the option', () => {
    expect(() => decideBackups({}, { backups: [], now: new Date(NOW) })).toThrow(/no rule given/);
    expect(() => decideBackups({ minCount: 0 }, { backups: [], now: new Date(NOW) })).toThrow(/--keep-min/);
    expect(() => decideBackups({ hotDays: -1 }, { backups: [], now: new Date(NOW) })).toThrow(/--keep-hot/);
  });

  it('the PITR window defaults to the longest tier', () => {
    expect(pitrCutoff({ hotDays: 14, warmDays: 30 }, new Date(NOW)).getTime()).toBe(NOW - 30 * DAY);
    expect(pitrCutoff({ hotDays: 14, pitrWindowDays: 7 }, new Date(NOW)).getTime()).toBe(NOW - 7 * DAY);
    expect(pitrCutoff({ coldMonths: 6 }, new Date(NOW)).toISOString()).toBe('2026-06-01T12:00:00.000Z');
  });
});

describe('WAL retention', () => {
  const SYS = '7000000000000000001';
  const seg = 16 * 1024 * 1024;
  const lsn = (segno: number, off = 0x28) => `0/${(segno * seg + off).toString(16).toUpperCase()}`;
  const pg = (day: number, segno: number, i: number) =>
    summary(NOW - day * DAY, i, {
      kind: 'postgres',
      stanza: 'main',
      postgres: { versionNum: 150000, version: '15', systemIdentifier: SYS, timeline: 1, startLsn: lsn(segno), stopLsn: lsn(segno, 0x100), stopNextXid: '1', startTime: new Date(NOW - day * DAY - 1000).toISOString(), stopTime: new Date(NOW - day * DAY).toISOString(), standby: false, dataChecksums: true, walSegmentSize: seg, dataDirectory: '/pg', tablespaces: [] },
    });
  const name = (tli: number, segno: number) => `${tli.toString(16).toUpperCase().padStart(8, '0')}00000000${segno.toString(16).toUpperCase().padStart(8, '0')}`;
  const key = (n: string) => `wal/main/${SYS}/${n.slice(0, 8)}/${n}`;

  it('keeps WAL from the window anchor on, each kept backup\'s own range, and every history file', () => {
    // Backups at segments 2 (day 40), 10 (day 20), 20 (day 5); window 10 days: the anchor is the day-20 backup.
    const backups = [pg(40, 2, 1), pg(20, 10, 2), pg(5, 20, 3)];
    const cutoff = pitrCutoff({ hotDays: 1, pitrWindowDays: 10 }, new Date(NOW));
    const anchors = pitrAnchors(backups, cutoff);
    expect([...anchors.keys()]).toEqual([backups[1]!.key]);
    const kept = new Set([backups[0]!.key, backups[1]!.key, backups[2]!.key]);
    const keys = [...Array.from({ length: 25 }, (_, i) => key(name(1, i))), key('00000002.history'), key(`${name(1, 2)}.00000028.backup`)];
    const d = new Map(decideWal(keys, backups, kept, anchors).map((w) => [w.name, w]));
    for (let i = 0; i < 25; i++) {
      const w = d.get(name(1, i))!;
      expect(w.keep, `segment ${i}`).toBe(i === 2 || i >= 10);
    }
    expect(d.get('00000002.history')!.keep).toBe(true);
    expect(d.get(`${name(1, 2)}.00000028.backup`)!.keep).toBe(true);
    // Once the oldest backup goes, so does its range.
    const without = new Map(decideWal(keys, backups, new Set([backups[1]!.key, backups[2]!.key]), anchors).map((w) => [w.name, w]));
    expect(without.get(name(1, 2))!.keep).toBe(false);
  });

  it('keeps all WAL of a system no backup belongs to yet', () => {
    const d = decideWal([`wal/main/42/00000001/${name(1, 1)}`], [], new Set(), new Map());
    expect(d[0]!.keep).toBe(true);
  });
});
