/**
 * WAL chain verification against a simulation of what recovery reads: for
 * random archives — a timeline switch or none (mid-segment or on a segment
 * boundary), segments the old primary archived past the switch, segments
 * missing anywhere, backups before and after the switch and on the abandoned
 * branch — recovery from each backup is walked segment by segment, reading
 * each segment number from the newest timeline that has begun there, as
 * PostgreSQL does. The gaps, which backups each breaks or cuts short, how far
 * each backup reaches, and the newest segment must be what `verifyWalChain`
 * reports.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backupTree, formatLsn, LocalKeyProvider, MemoryStore, Repository, segmentName, verifyWalChain, walKey, walPush, type PostgresBackupInfo } from '@coffer/engine';
import { scratchWithKey } from '../../../test/support/keys.js';
import { fakeCluster, segment } from '../../../test/support/wal.js';

const SEG = 1 << 20;
const SYS = 7_300_000_000_000_000_777n;

interface Layout {
  /** Segments 1..last1 archived on timeline 1 (some of them past the switch: the old primary's). */
  last1: number;
  /** Timeline 2 begins at this LSN (undefined: no switch); its segments run from the switch segment to last2. */
  switchLsn?: bigint;
  last2: number;
  missing: Set<string>;
  backups: { tli: number; start: number; span: number }[];
}

const layouts = fc
  .record({
    last1: fc.integer({ min: 3, max: 10 }),
    switchAt: fc.option(fc.record({ seg: fc.integer({ min: 2, max: 8 }), boundary: fc.boolean() }), { nil: undefined }),
    more2: fc.integer({ min: 0, max: 5 }),
    // A missing segment anywhere, or just at the switch (on either timeline) and the segment before it.
    missing: fc.array(fc.record({ tli: fc.constantFrom(1, 2), seg: fc.oneof(fc.integer({ min: 1, max: 14 }), fc.constantFrom('switch', 'before-switch')) }), { maxLength: 3 }),
    backups: fc.array(fc.record({ tli: fc.constantFrom(1, 2), start: fc.oneof(fc.integer({ min: 1, max: 12 }), fc.constant('switch' as const)), span: fc.integer({ min: 0, max: 1 }) }), { minLength: 1, maxLength: 3 }),
  })
  .map((raw): Layout => {
    const at = (v: number | 'switch' | 'before-switch') => (typeof v === 'number' ? v : Math.min(raw.switchAt?.seg ?? 2, raw.last1) - (v === 'before-switch' ? 1 : 0));
    const r = { ...raw, missing: raw.missing.map((m) => ({ ...m, seg: at(m.seg) })), backups: raw.backups.map((b) => ({ ...b, start: at(b.start) })) };
    const switchSeg = r.switchAt ? Math.min(r.switchAt.seg, r.last1) : undefined;
    const switchLsn = switchSeg !== undefined ? BigInt(switchSeg * SEG + (r.switchAt!.boundary ? 0 : 0x4000)) : undefined;
    const last2 = switchSeg !== undefined ? switchSeg + r.more2 : 0;
    const backups = r.backups
      .map((b) => (switchSeg === undefined ? { ...b, tli: 1 } : b))
      .map((b) => ({ ...b, start: b.tli === 2 ? Math.max(b.start, switchSeg!) : b.start }))
      .filter((b) => b.start + b.span <= (b.tli === 1 ? r.last1 : last2));
    return { last1: r.last1, ...(switchLsn !== undefined ? { switchLsn } : {}), last2, missing: new Set(r.missing.map((m) => `${m.tli}:${m.seg}`)), backups };
  })
  .filter((l) => l.backups.length > 0)
  // Not modelled: with the new timeline's copy of the switch segment missing, PostgreSQL falls back to the old
  // timeline's file of that segment; the simulation does not (CI found layouts where the two then disagree).
  .filter((l) => l.switchLsn === undefined || !l.missing.has(`2:${Number(l.switchLsn / BigInt(SEG))}`));

interface Expected {
  newest?: string;
  gaps: Map<string, { breaks: number[]; limits: number[] }>;
  states: { state: string; reachesTo?: string }[];
}

/** Recovery from each backup, segment by segment, as PostgreSQL reads it. */
function simulate(l: Layout): Expected {
  const switchSeg = l.switchLsn !== undefined ? Number(l.switchLsn / BigInt(SEG)) : undefined;
  const present = (tli: number, n: number) => n >= 1 && !l.missing.has(`${tli}:${n}`) && (tli === 1 ? n <= l.last1 : switchSeg !== undefined && n >= switchSeg && n <= l.last2);
  // Which timeline's file recovery to "latest" reads for segment n.
  const tl = (n: number) => (switchSeg !== undefined && n >= switchSeg ? 2 : 1);
  let newestNo: number | undefined;
  for (let n = Math.max(l.last1, l.last2); n >= 1 && newestNo === undefined; n--) if (present(tl(n), n)) newestNo = n;
  const out: Expected = { gaps: new Map(), states: [], ...(newestNo !== undefined ? { newest: segmentName(tl(newestNo), BigInt(newestNo), SEG) } : {}) };
  l.backups.forEach((b, i) => {
    const stopSeg = b.start + b.span;
    const branch = b.tli === 1 && switchSeg !== undefined && BigInt(stopSeg * SEG + 0x100) > l.switchLsn!;
    const line = (n: number) => (branch ? 1 : tl(n));
    const end = branch ? Math.max(...Array.from({ length: l.last1 }, (_, k) => k + 1).filter((n) => present(1, n)), b.start) : (newestNo ?? 0);
    let state = branch ? 'branch' : 'complete';
    let last: string | undefined;
    for (let n = b.start; n <= end; n++) {
      const t = line(n);
      if (present(t, n)) {
        last = segmentName(t, BigInt(n), SEG);
        continue;
      }
      let m = n;
      const runEnd = !branch && t === 1 && switchSeg !== undefined ? switchSeg - 1 : end;
      while (m + 1 <= runEnd && !present(t, m + 1)) m++;
      const id = `${segmentName(t, BigInt(n), SEG)}…${segmentName(t, BigInt(m), SEG)}`;
      const gap = out.gaps.get(id) ?? { breaks: [], limits: [] };
      out.gaps.set(id, gap);
      if (n <= stopSeg) {
        state = 'broken';
        gap.breaks.push(i);
      } else {
        if (!branch) state = 'limited';
        gap.limits.push(i);
      }
      break;
    }
    out.states.push({ state, ...(state !== 'broken' && last ? { reachesTo: last } : {}) });
  });
  return out;
}

let work: { dir: string; cleanup: () => Promise<void> };
let keys: LocalKeyProvider;
beforeAll(async () => {
  ({ work, keys } = await scratchWithKey('coffer-wal-chain-'));
});
afterAll(async () => {
  await work.cleanup();
});

async function build(l: Layout, n: number): Promise<{ repo: Repository; keys: string[] }> {
  const repo = await Repository.init(new MemoryStore(), keys, { chunker: { minSize: 256, avgSize: 1024, maxSize: 4096 }, packSize: 256 * 1024 });
  const pgdata = await fakeCluster(join(work.dir, `pg-${n}`), SYS);
  const data = join(work.dir, `data-${n}`);
  await mkdir(data, { recursive: true });
  await writeFile(join(data, 'f'), 'x');
  const push = async (name: string, bytes: Buffer) => {
    await writeFile(join(pgdata, 'pg_wal', name), bytes);
    await walPush(repo, join(pgdata, 'pg_wal', name));
  };
  const switchSeg = l.switchLsn !== undefined ? Number(l.switchLsn / BigInt(SEG)) : undefined;
  for (let s = 1; s <= l.last1; s++) if (!l.missing.has(`1:${s}`)) await push(segmentName(1, BigInt(s), SEG), segment(SYS, s, SEG));
  if (switchSeg !== undefined) {
    await push('00000002.history', Buffer.from(`1\t${formatLsn(l.switchLsn!)}\tno recovery target specified\n`));
    for (let s = switchSeg; s <= l.last2; s++) {
      if (l.missing.has(`2:${s}`)) continue;
      const seg = segment(SYS, 1000 + s, SEG);
      seg.writeUInt32LE(2, 4);
      await push(segmentName(2, BigInt(s), SEG), seg);
    }
  }
  const made: string[] = [];
  for (const [i, b] of l.backups.entries()) {
    // Backups are ordered by when they were made: two made within one millisecond would tie.
    const t = Date.now();
    while (Date.now() === t) await new Promise((r) => setTimeout(r, 1));
    const info: PostgresBackupInfo = {
      versionNum: 150000,
      version: '15',
      systemIdentifier: SYS.toString(),
      timeline: b.tli,
      startLsn: formatLsn(BigInt(b.start * SEG + 0x28)),
      stopLsn: formatLsn(BigInt((b.start + b.span) * SEG + 0x100)),
      stopNextXid: '1000',
      startTime: new Date(Date.UTC(2026, 0, 1, 0, i)).toISOString(),
      stopTime: new Date(Date.UTC(2026, 0, 1, 0, i, 30)).toISOString(),
      standby: false,
      dataChecksums: true,
      walSegmentSize: SEG,
      dataDirectory: data,
      backupLabel: '',
      tablespaceMap: '',
      tablespaces: [],
      archiveChecked: true,
    };
    made.push((await backupTree(repo, { kind: 'postgres', root: data, isParent: () => false, finish: async () => ({ postgres: info, stanza: 'main' }) }, { workers: 0 })).key);
  }
  return { repo, keys: made };
}

describe('WAL chain verification', () => {
  it('agrees with a segment-by-segment simulation of recovery on random archives', async () => {
    let n = 0;
    await fc.assert(
      fc.asyncProperty(layouts, fc.integer({ min: -1, max: 3 }), async (l, window) => {
        const { repo, keys } = await build(l, n++);
        const want = simulate(l);
        const got = await verifyWalChain(repo);
        // Backups are listed in time order, which is the order they were made in.
        const order = got.backups.map((b) => keys.indexOf(b.backup));
        expect(order).toEqual(keys.map((_, i) => i));
        expect(got.newest).toBe(want.newest);
        expect(got.backups.map((b) => ({ state: b.state, ...(b.reachesTo ? { reachesTo: b.reachesTo } : {}) }))).toEqual(want.states);
        expect(new Map(got.gaps.map((g) => [`${g.from}…${g.to}`, { breaks: g.breaks.map((k) => keys.indexOf(k)), limits: g.limits.map((k) => keys.indexOf(k)) }]))).toEqual(want.gaps);
        expect(got.problems).toEqual([]);
        expect(got.ok).toBe(want.gaps.size === 0);
        // With a PITR window from just after backup `window` (retention's): a gap that breaks nothing and lies before
        // that backup — the window's anchor, the newest taken before the window began — was removed on purpose.
        const pitrFrom = new Date(Date.UTC(2026, 0, 1, 0, window, 45));
        const anchor = window >= 0 ? Math.min(window, keys.length - 1) : undefined;
        const windowed = await verifyWalChain(repo, { pitrFrom });
        const expected = windowed.gaps.map((g) => anchor !== undefined && g.breaks.length === 0 && !g.limits.map((k) => keys.indexOf(k)).includes(anchor));
        expect(windowed.gaps.map((g) => g.expected === true)).toEqual(expected);
        expect(windowed.ok).toBe(expected.every(Boolean));
      }),
      { numRuns: 150 },
    );
  }, 300_000);

  it('history files that disagree, or a parent history that is gone, are problems', async () => {
    const l: Layout = { last1: 3, last2: 0, missing: new Set(), backups: [{ tli: 1, start: 1, span: 0 }] };
    const { repo } = await build(l, 9999);
    const pgdata = join(work.dir, 'pg-9999');
    const history = async (name: string, text: string) => {
      await writeFile(join(pgdata, 'pg_wal', name), text);
      await walPush(repo, join(pgdata, 'pg_wal', name));
    };
    await history('00000002.history', '1\t0/2000000\tno recovery target specified\n');
    await history('00000003.history', '1\t0/2800000\tno recovery target specified\n2\t0/3000000\tno recovery target specified\n');
    const got = await verifyWalChain(repo);
    expect(got.timeline).toBe(3);
    expect(got.ok).toBe(false);
    expect(got.problems).toEqual(['00000002.history does not agree with 00000003.history on the timelines before 2']);
    await repo.objects.delete(walKey({ stanza: 'main', systemIdentifier: SYS.toString() }, '00000002.history'));
    expect((await verifyWalChain(repo)).problems).toEqual(["00000002.history is not archived though timeline 3's history passes through it"]);
  });
});
