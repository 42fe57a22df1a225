/**
 * WAL chain verification: from each PostgreSQL backup of a stanza to the
 * newest archived segment, following the timeline history PostgreSQL would
 * follow with `recovery_target_timeline = latest`, every segment must be in
 * the repository and its record must open. A missing run is reported once,
 * with the backups it breaks: those that need it to become consistent
 * (unrestorable) and those whose recovery stops before it (point-in-time
 * recovery ends at the gap). History files are checked against each other.
 *
 * Reads WAL records (small, authenticated objects), not packs: a pack's bytes
 * are proven by `check --read-data` and by every replay.
 */
import pLimit from 'p-limit';
import { CofferError } from '../errors.js';
import { parseWalKey, WAL_PREFIX, WAL_SEGMENT, type WalScope } from '../format/wal-record.js';
import type { BackupSummary } from '../format/manifest.js';
import type { Repository } from '../repository/repository.js';
import { parseLsn, segmentName, segmentNumber } from './layout.js';
import { DEFAULT_STANZA } from './stanza.js';
import { parseHistory } from './timeline-history.js';
import { pitrAnchors } from './wal-retention.js';
import { fetchWalBytes, readWalRecord } from './wal.js';

/** What a gap does to one backup. */
export type ChainState = 'complete' | 'limited' | 'broken' | 'branch';

export interface BackupChain {
  backup: string;
  label: string;
  timeline: number;
  /**
   * complete: WAL runs from its start to the newest segment; limited: it can
   * be restored, but recovery ends at `reachesTo` (a gap follows); broken:
   * WAL it needs to become consistent is missing; branch: it lies on a
   * timeline the newest one does not descend from (checked to that
   * timeline's own end).
   */
  state: ChainState;
  /** The last segment recovery from this backup can replay without a gap. */
  reachesTo?: string;
}

export interface WalGap {
  timeline: number;
  /** First and last missing segment (inclusive). */
  from: string;
  to: string;
  segments: number;
  /** Backups that need this WAL to become consistent. */
  breaks: string[];
  /** Backups whose recovery ends before this gap. */
  limits: string[];
  /**
   * Removed by retention, as promised: the gap lies before the backup that
   * anchors the PITR window (`pitrFrom`), so it only shortens recovery from
   * backups older than the window, and breaks none. Not a failure.
   */
  expected?: boolean;
}

export interface WalChainReport {
  ok: boolean;
  stanza: string;
  systemIdentifier?: string;
  /** The timeline recovery to "latest" ends on, and its newest archived segment. */
  timeline?: number;
  newest?: string;
  /** Segment records read (each opened and authenticated). */
  segmentsRead: number;
  gaps: WalGap[];
  backups: BackupChain[];
  /** Segments whose record is in the repository but does not open, and history files that do not agree. */
  problems: string[];
}

interface Span {
  tli: number;
  from: bigint;
  to: bigint;
}

function tliHex(tli: number): string {
  return tli.toString(16).toUpperCase().padStart(8, '0');
}


export interface WalChainOptions {
  stanza?: string;
  /** Records read at once (default 16). */
  concurrency?: number;
  /**
   * The start of the PITR window retention keeps (`coffer expire`'s): WAL
   * before the newest backup taken by then may have been removed on purpose.
   * Without it, every gap is a failure.
   */
  pitrFrom?: Date;
}

export async function verifyWalChain(repo: Repository, options: WalChainOptions = {}): Promise<WalChainReport> {
  const stanza = options.stanza ?? DEFAULT_STANZA;
  const backups = (await repo.listBackups()).filter((b) => b.kind === 'postgres' && b.postgres && (b.stanza ?? DEFAULT_STANZA) === stanza);
  const report: WalChainReport = { ok: true, stanza, segmentsRead: 0, gaps: [], backups: [], problems: [] };
  const newestBackup = backups[backups.length - 1];
  if (!newestBackup) return report;
  // The system recovery would restore: the newest backup's (older systems of a stanza upgraded in place are history).
  const sysid = newestBackup.postgres!.systemIdentifier;
  const segmentBytes = newestBackup.postgres!.walSegmentSize || 16 * 1024 * 1024;
  const scope: WalScope = { stanza, systemIdentifier: sysid };
  report.systemIdentifier = sysid;
  const mine = backups.filter((b) => b.postgres!.systemIdentifier === sysid);

  // What is archived: segment numbers per timeline, history files per timeline.
  const byTimeline = new Map<number, Set<bigint>>();
  const keyOf = new Map<string, string>();
  const histories = new Set<number>();
  for (const o of await repo.objects.list(WAL_PREFIX)) {
    const parsed = parseWalKey(o.key);
    if (!parsed) continue;
    if (parsed.scope ? parsed.scope.stanza !== stanza || parsed.scope.systemIdentifier !== sysid : repo.config.format !== 1) continue;
    const tli = parseInt(parsed.name.slice(0, 8), 16);
    if (parsed.name.endsWith('.history')) histories.add(tli);
    else if (WAL_SEGMENT.test(parsed.name)) {
      let set = byTimeline.get(tli);
      if (!set) byTimeline.set(tli, (set = new Set()));
      set.add(segmentNumber(parsed.name, segmentBytes));
      keyOf.set(parsed.name, o.key);
    }
  }

  // The newest timeline: the highest one with a history file or segments (PostgreSQL probes history files upwards).
  const latest = Math.max(...byTimeline.keys(), ...histories, newestBackup.postgres!.timeline);
  report.timeline = latest;
  const ancestry = await readAncestry(repo, scope, latest, histories, report.problems);

  // The newest segment: the newest timeline's last; a timeline just created holds none yet, so then its parent's last before the switch.
  const order = [...ancestry.keys()].sort((a, b) => a - b);
  const seg = BigInt(segmentBytes);
  let newestTli = latest;
  let newestSeg: bigint | undefined;
  for (let i = order.length - 1; i >= 0 && newestSeg === undefined; i--) {
    const t = order[i]!;
    const switchAt = ancestry.get(t);
    const own = [...(byTimeline.get(t) ?? [])].filter((n) => switchAt === undefined || n < switchAt / seg);
    if (own.length > 0) {
      newestTli = t;
      newestSeg = own.reduce((a, b) => (b > a ? b : a));
    }
  }
  if (newestSeg !== undefined) report.newest = segmentName(newestTli, newestSeg, segmentBytes);

  const spansFor = (b: BackupSummary): { spans: Span[]; branch: boolean } => {
    const pg = b.postgres!;
    const start = parseLsn(pg.startLsn) / seg;
    const end = ancestry.get(pg.timeline);
    const onLine = ancestry.has(pg.timeline) && (end === undefined || parseLsn(pg.stopLsn) <= end);
    if (!onLine) {
      const own = byTimeline.get(pg.timeline);
      const last = own && own.size > 0 ? [...own].reduce((x, y) => (y > x ? y : x)) : start;
      return { spans: [{ tli: pg.timeline, from: start, to: last < start ? start : last }], branch: true };
    }
    const spans: Span[] = [];
    let from = start;
    for (const t of order) {
      if (t < pg.timeline) continue;
      const switchAt = ancestry.get(t);
      if (switchAt !== undefined) {
        // The segment holding the switch point is read from the next timeline (its first segment copies what came before).
        const switchSeg = switchAt / seg;
        if (switchSeg - 1n >= from) spans.push({ tli: t, from, to: switchSeg - 1n });
        if (switchSeg > from) from = switchSeg;
      } else {
        const last = newestTli === t && newestSeg !== undefined ? newestSeg : from - 1n;
        if (last >= from) spans.push({ tli: t, from, to: last });
      }
    }
    return { spans, branch: false };
  };

  // Read every needed record once (opening it authenticates it); one that does not open counts as missing.
  const needed = new Set<string>();
  const plans = mine.map((b) => ({ b, ...spansFor(b) }));
  for (const p of plans) for (const s of p.spans) for (let n = s.from; n <= s.to; n++) if (byTimeline.get(s.tli)?.has(n)) needed.add(segmentName(s.tli, n, segmentBytes));
  const unreadable = new Set<string>();
  const limit = pLimit(options.concurrency ?? 16);
  await Promise.all(
    [...needed].map((name) =>
      limit(async () => {
        try {
          if (!(await readWalRecord(repo, scope, name))) unreadable.add(name);
        } catch (e) {
          if (!(e instanceof CofferError)) throw e;
          unreadable.add(name);
          report.problems.push(`${keyOf.get(name) ?? name}: ${e.message}`);
        }
      }),
    ),
  );
  report.segmentsRead = needed.size;
  const present = (tli: number, n: bigint) => byTimeline.get(tli)?.has(n) === true && !unreadable.has(segmentName(tli, n, segmentBytes));

  const gaps = new Map<string, WalGap>();
  for (const { b, spans, branch } of plans) {
    const pg = b.postgres!;
    const stopSeg = (parseLsn(pg.stopLsn) - 1n) / seg;
    let state: ChainState = branch ? 'branch' : 'complete';
    let lastGood: string | undefined;
    outer: for (const s of spans) {
      for (let n = s.from; n <= s.to; n++) {
        if (present(s.tli, n)) {
          lastGood = segmentName(s.tli, n, segmentBytes);
          continue;
        }
        // A run of missing segments from n on this timeline.
        let m = n;
        while (m + 1n <= s.to && !present(s.tli, m + 1n)) m++;
        const id = `${s.tli}:${n}`;
        let gap = gaps.get(id);
        if (!gap) gaps.set(id, (gap = { timeline: s.tli, from: segmentName(s.tli, n, segmentBytes), to: segmentName(s.tli, m, segmentBytes), segments: Number(m - n + 1n), breaks: [], limits: [] }));
        // Up to the backup's last segment, on whichever timeline recovery reads it from, WAL makes the backup consistent.
        const needsIt = n <= stopSeg;
        if (needsIt) {
          state = 'broken';
          gap.breaks.push(b.key);
        } else {
          if (state !== 'branch') state = 'limited';
          gap.limits.push(b.key);
        }
        break outer;
      }
    }
    report.backups.push({ backup: b.key, label: b.label, timeline: pg.timeline, state, ...(state !== 'broken' && lastGood ? { reachesTo: lastGood } : {}) });
  }
  report.gaps = [...gaps.values()].sort((a, b) => (a.from < b.from ? -1 : 1));
  if (options.pitrFrom) {
    const anchor = [...pitrAnchors(mine, options.pitrFrom).keys()][0];
    for (const g of report.gaps) if (anchor !== undefined && g.breaks.length === 0 && !g.limits.includes(anchor)) g.expected = true;
  }
  report.ok = report.gaps.every((g) => g.expected) && report.problems.length === 0;
  return report;
}

/**
 * Timeline → the LSN where it ended, for `latest` and its ancestors, from the
 * archived history files; each ancestor's own history must be the start of
 * its child's (a history rewritten or taken from another cluster is a problem).
 */
async function readAncestry(repo: Repository, scope: WalScope, latest: number, histories: ReadonlySet<number>, problems: string[]): Promise<Map<number, bigint | undefined>> {
  const out = new Map<number, bigint | undefined>([[latest, undefined]]);
  if (latest === 1) return out;
  const read = async (tli: number): Promise<[number, bigint][] | undefined> => {
    const name = `${tliHex(tli)}.history`;
    if (!histories.has(tli)) return undefined;
    try {
      const bytes = await fetchWalBytes(repo, scope, name);
      return bytes ? parseHistory(bytes.toString('utf8'), name, problems) : undefined;
    } catch (e) {
      if (!(e instanceof CofferError)) throw e;
      problems.push(`${name}: ${e.message}`);
      return undefined;
    }
  };
  const lines = await read(latest);
  if (!lines) {
    problems.push(`timeline ${latest} has archived WAL but ${tliHex(latest)}.history is ${histories.has(latest) ? 'unreadable' : 'not archived'}: recovery cannot follow it`);
    return out;
  }
  let previous = -1;
  let previousLsn = -1n;
  for (const [tli, lsn] of lines) {
    if (tli <= previous || tli >= latest || lsn < previousLsn) problems.push(`${tliHex(latest)}.history: timeline ${tli} at ${lsn.toString(16)} is out of order`);
    previous = tli;
    previousLsn = lsn;
    out.set(tli, lsn);
  }
  // Each parent's history must be the first lines of its child's.
  for (let i = 1; i < lines.length; i++) {
    const parent = lines[i]![0];
    const own = await read(parent);
    if (!own) {
      problems.push(`${tliHex(parent)}.history is not archived though timeline ${latest}'s history passes through it`);
      continue;
    }
    const expected = lines.slice(0, i);
    if (own.length !== expected.length || own.some(([t, l], j) => t !== expected[j]![0] || l !== expected[j]![1])) {
      problems.push(`${tliHex(parent)}.history does not agree with ${tliHex(latest)}.history on the timelines before ${parent}`);
    }
  }
  return out;
}
