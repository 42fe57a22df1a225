/**
 * Seven simulated months of a PostgreSQL repository under the seeds' tiers
 * (hot 14 days, warm 30 days, cold weekly for 6 months) with a 7-day PITR
 * window: two base backups a day, WAL archived between them, expire every
 * night, gc every week — all through the real writers, with the wall clock
 * moved by the test. At the end exactly the backups and WAL the rules name
 * are left (the rules are spelled out again here, independently of the
 * engine), everything left restores and checks, and the repository's size
 * stopped growing once the cold tier filled.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import {
  backupTree,
  checkRepository,
  collectGarbage,
  collectList,
  expire,
  fetchWalBytes,
  formatLsn,
  LocalKeyProvider,
  MemoryStore,
  Repository,
  restoreBackup,
  walPush,
  type BackupSummary,
  type PostgresBackupInfo,
  type RetentionPolicy,
} from '@coffer/engine';
import { scratch, snapshot } from '../../../test/support/tree.js';
import { fakeCluster, segment } from '../../../test/support/wal.js';

const DAY = 86_400_000;
const SEG = 1 << 20;
const SYS = 7_300_000_000_000_000_001n;
const START = Date.parse('2026-01-05T00:00:00Z'); // a Monday
const DAYS = 214;
const policy: RetentionPolicy = { hotDays: 14, warmDays: 30, coldMonths: 6, pitrWindowDays: 7 };

let work: { dir: string; cleanup: () => Promise<void> };
beforeAll(async () => {
  work = await scratch('coffer-retention-sim-');
});
afterAll(async () => {
  vi.useRealTimers();
  await work.cleanup();
});

const segName = (n: number) => `00000001${Math.floor(n / 4096).toString(16).toUpperCase().padStart(8, '0')}${(n % 4096).toString(16).toUpperCase().padStart(8, '0')}`;

describe('seven months of retention', () => {
  it('keeps exactly what the tiers and the PITR window name, and the repository stops growing', async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    const store = new MemoryStore();
    const repo = await Repository.init(store, LocalKeyProvider.fromPassphrase('sim'), { chunker: { minSize: 256, avgSize: 1024, maxSize: 4096 }, packSize: 256 * 1024 });
    const pgdata = await fakeCluster(join(work.dir, 'pgdata'), SYS);
    const data = join(work.dir, 'data');
    await mkdir(data, { recursive: true });
    await writeFile(join(data, 'base.bin'), randomBytes(64 * 1024));
    let nextSeg = 1;
    const made: { key: string; t: number; startSeg: number }[] = [];
    const sizes = new Map<number, number>();

    const backupAt = async (t: number) => {
      vi.setSystemTime(t);
      // Each backup changes a little: one new file of 16 KiB replaces the one written 20 backups ago, so each
      // backup holds some data of its own and the data set stays the same size.
      await writeFile(join(data, `b-${made.length}.bin`), randomBytes(16 * 1024));
      await rm(join(data, `b-${made.length - 20}.bin`), { force: true });
      const startSeg = nextSeg;
      const info: PostgresBackupInfo = {
        versionNum: 150000,
        version: '15',
        systemIdentifier: SYS.toString(),
        timeline: 1,
        startLsn: formatLsn(BigInt(startSeg * SEG + 0x28)),
        stopLsn: formatLsn(BigInt(startSeg * SEG + 0x100)),
        stopNextXid: '1000',
        startTime: new Date(t - 1000).toISOString(),
        stopTime: new Date(t).toISOString(),
        standby: false,
        dataChecksums: true,
        walSegmentSize: SEG,
        dataDirectory: data,
        backupLabel: '',
        tablespaceMap: '',
        tablespaces: [],
        archiveChecked: true,
      };
      const { key } = await backupTree(repo, { kind: 'postgres', root: data, isParent: (b) => b.kind === 'postgres', finish: async () => ({ postgres: info, stanza: 'main' }) }, { workers: 0 });
      made.push({ key, t, startSeg });
    };
    const pushWal = async (t: number) => {
      vi.setSystemTime(t);
      const name = segName(nextSeg);
      await writeFile(join(pgdata, 'pg_wal', name), segment(SYS, nextSeg, SEG));
      await walPush(repo, join(pgdata, 'pg_wal', name));
      nextSeg++;
    };

    for (let d = 0; d < DAYS; d++) {
      const day = START + d * DAY;
      await backupAt(day + 2 * 3_600_000);
      await pushWal(day + 8 * 3_600_000);
      await backupAt(day + 14 * 3_600_000);
      await pushWal(day + 20 * 3_600_000);
      vi.setSystemTime(day + 23 * 3_600_000);
      await expire(repo, policy);
      if (d % 7 === 6) {
        await collectGarbage(repo);
        sizes.set(d, (await collectList(store, '')).reduce((n, o) => n + (o.key.startsWith('locks/') ? 0 : o.size), 0));
      }
    }
    const now = START + (DAYS - 1) * DAY + 23 * 3_600_000;

    // The rules, spelled out: hot, warm (newest of each day), cold (newest of each Monday week), the newest, the window's anchor.
    const expected = new Set<string>();
    const newestFirst = [...made].sort((a, b) => b.t - a.t);
    expected.add(newestFirst[0]!.key);
    const days = new Set<string>();
    const weeks = new Set<number>();
    const coldFrom = new Date(now);
    coldFrom.setUTCMonth(coldFrom.getUTCMonth() - 6);
    for (const b of newestFirst) {
      if (now - b.t <= 14 * DAY) expected.add(b.key);
      const dayName = new Date(b.t).toISOString().slice(0, 10);
      if (now - b.t <= 30 * DAY && !days.has(dayName)) {
        days.add(dayName);
        expected.add(b.key);
      }
      const week = Math.floor((b.t - START) / (7 * DAY));
      if (b.t >= coldFrom.getTime() && !weeks.has(week)) {
        weeks.add(week);
        expected.add(b.key);
      }
    }
    const anchor = newestFirst.find((b) => b.t <= now - 7 * DAY)!;
    expected.add(anchor.key);
    const left: BackupSummary[] = await repo.listBackups();
    expect(new Set(left.map((b) => b.key))).toEqual(expected);
    // 28 hot, 16 more warm days, weekly cold to six months: about 65 of the 428 made.
    expect(left.length).toBeGreaterThan(55);
    expect(left.length).toBeLessThan(75);

    // WAL: everything from the anchor's start on, and each kept backup's own segment; nothing else.
    const keptSegs = new Set<number>();
    for (let n = anchor.startSeg; n < nextSeg; n++) keptSegs.add(n);
    for (const b of made) if (expected.has(b.key)) keptSegs.add(b.startSeg);
    const walLeft = (await collectList(store, 'wal/')).map((o) => o.key.slice(o.key.lastIndexOf('/') + 1)).filter((n) => n.length === 24);
    expect(new Set(walLeft)).toEqual(new Set([...keptSegs].map(segName)));

    // What is left is whole: it checks, the oldest kept backup restores, and a kept segment comes back byte for byte.
    const check = await checkRepository(repo, { readData: true });
    expect(check.problems.map((p) => p.message)).toEqual([]);
    vi.useRealTimers();
    const oldest = [...made].filter((b) => expected.has(b.key)).sort((a, b) => a.t - b.t)[0]!;
    const out = join(work.dir, 'out');
    const restored = await restoreBackup(repo, oldest.key, out);
    expect(restored.files).toBeGreaterThan(1);
    const snap = await snapshot(out);
    expect(snap.has('base.bin')).toBe(true);
    expect(await fetchWalBytes(repo, { stanza: 'main', systemIdentifier: SYS.toString() }, segName(anchor.startSeg))).toEqual(segment(SYS, anchor.startSeg, SEG));

    // Flat once the cold tier is full (day ~182 on): the last weeks stay within 10% of each other.
    const late = [...sizes].filter(([d]) => d >= 188).map(([, s]) => s);
    expect(late.length).toBeGreaterThanOrEqual(3);
    expect(Math.max(...late) / Math.min(...late)).toBeLessThan(1.1);
  }, 240_000);
});
