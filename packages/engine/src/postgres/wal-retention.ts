/**
 * Which archived WAL files retention keeps. Per stanza, the PITR window
 * starts from its *anchor*: the newest backup that stopped at or before the
 * window's start (now − window), kept whatever the tiers say. Every WAL file
 * from the anchor's start LSN onward stays, on every timeline, so that each
 * point in the window can be recovered to from the anchor or a later backup.
 * Before that, only what each kept backup needs to reach consistency (its
 * start to stop LSN) stays, and every timeline history file. WAL of a system
 * identifier no backup belongs to is kept (a first backup may be running).
 * Format 1 WAL (no stanza in its key) is never expired. A streamed prefix
 * (`<segment>.<length>.stream`) goes once the whole segment or a longer
 * prefix of it is archived, and otherwise with its segment.
 */
import type { BackupSummary } from '../format/manifest.js';
import { parseWalKey, parseWalStreamName, WAL_SEGMENT } from '../format/wal-record.js';
import { backupTime } from '../retention/policy.js';
import { parseLsn, segmentNumber } from './layout.js';

export interface WalFileDecision {
  key: string;
  stanza: string;
  systemIdentifier: string;
  timeline: number;
  name: string;
  keep: boolean;
  reason: string;
}

/** The anchor of each stanza's PITR window: manifest key → the reason it is kept. */
export function pitrAnchors(backups: readonly BackupSummary[], cutoff: Date): Map<string, string> {
  const anchors = new Map<string, string>();
  const newest = new Map<string, BackupSummary>();
  for (const b of backups) {
    if (b.kind !== 'postgres' || !b.postgres) continue;
    const stanza = b.stanza ?? 'main';
    if (backupTime(b) > cutoff.getTime()) continue;
    const best = newest.get(stanza);
    if (!best || backupTime(b) > backupTime(best)) newest.set(stanza, b);
  }
  for (const b of newest.values()) anchors.set(b.key, `PITR window: recovery to any time since ${cutoff.toISOString()} starts from it`);
  return anchors;
}

interface SystemRanges {
  segmentBytes: number;
  /** WAL from here on is kept (undefined: no window for this system). */
  windowFrom: bigint | undefined;
  /** [start, stop) LSNs of kept backups. */
  ranges: [bigint, bigint][];
}


/**
 * Decides each WAL key of format 2 (`wal/<stanza>/<system>/<tli>/<name>`):
 * `backups` are all PostgreSQL backups, `kept` the manifest keys retention
 * keeps, `anchors` those the window starts from.
 */
export function decideWal(walKeys: readonly string[], backups: readonly BackupSummary[], kept: ReadonlySet<string>, anchors: ReadonlyMap<string, string>): WalFileDecision[] {
  const systems = new Map<string, SystemRanges>();
  const scopeKey = (stanza: string, system: string) => `${stanza}\0${system}`;
  const byScope = new Map<string, BackupSummary[]>();
  for (const b of backups) {
    if (b.kind !== 'postgres' || !b.postgres) continue;
    const k = scopeKey(b.stanza ?? 'main', b.postgres.systemIdentifier);
    byScope.set(k, [...(byScope.get(k) ?? []), b]);
  }
  const anchorOf = new Map<string, BackupSummary>();
  for (const b of backups) if (anchors.has(b.key)) anchorOf.set(b.stanza ?? 'main', b);
  for (const [k, list] of byScope) {
    const stanza = k.slice(0, k.indexOf('\0'));
    const anchor = anchorOf.get(stanza);
    const segmentBytes = list[0]!.postgres!.walSegmentSize || 16 * 1024 * 1024;
    let windowFrom: bigint | undefined;
    if (anchor && scopeKey(stanza, anchor.postgres!.systemIdentifier) === k) windowFrom = parseLsn(anchor.postgres!.startLsn);
    else if (!anchor || list.some((b) => backupTime(b) > backupTime(anchor))) {
      // No backup before the window (everything since the oldest is in it), or a system newer than the anchor's.
      windowFrom = list.map((b) => parseLsn(b.postgres!.startLsn)).reduce((a, b) => (b < a ? b : a));
    }
    const ranges = list.filter((b) => kept.has(b.key)).map((b): [bigint, bigint] => [parseLsn(b.postgres!.startLsn), parseLsn(b.postgres!.stopLsn)]);
    systems.set(k, { segmentBytes, windowFrom, ranges });
  }

  // Streamed prefixes: the whole segment, or a longer prefix of it, supersedes them.
  const present = new Set(walKeys);
  const longest = new Map<string, number>();
  for (const key of walKeys) {
    const stream = parseWalStreamName(key.slice(key.lastIndexOf('/') + 1));
    const at = key.slice(0, key.lastIndexOf('/') + 1);
    if (stream) longest.set(at + stream.segment, Math.max(longest.get(at + stream.segment) ?? 0, stream.length));
  }

  const out: WalFileDecision[] = [];
  for (const key of walKeys) {
    const parsed = parseWalKey(key);
    if (!parsed?.scope) continue;
    const { name, scope } = parsed;
    const timeline = parseInt(name.slice(0, 8), 16);
    const base = { key, stanza: scope.stanza, systemIdentifier: scope.systemIdentifier, timeline, name };
    const stream = parseWalStreamName(name);
    if (stream) {
      const segmentKey = key.slice(0, key.lastIndexOf('/') + 1) + stream.segment;
      if (present.has(segmentKey)) {
        out.push({ ...base, keep: false, reason: 'streamed prefix of a segment archived whole' });
        continue;
      }
      if (longest.get(segmentKey)! > stream.length) {
        out.push({ ...base, keep: false, reason: 'streamed prefix of a segment streamed further' });
        continue;
      }
    }
    const sys = systems.get(scopeKey(scope.stanza, scope.systemIdentifier));
    if (name.endsWith('.history')) {
      out.push({ ...base, keep: true, reason: 'timeline history' });
      continue;
    }
    if (!sys) {
      out.push({ ...base, keep: true, reason: 'no backup of this system yet' });
      continue;
    }
    const segment = name.slice(0, 24);
    if (!WAL_SEGMENT.test(segment)) {
      out.push({ ...base, keep: true, reason: 'not a segment' });
      continue;
    }
    const start = segmentNumber(segment, sys.segmentBytes) * BigInt(sys.segmentBytes);
    const end = start + BigInt(sys.segmentBytes);
    if (sys.windowFrom !== undefined && end > sys.windowFrom) {
      out.push({ ...base, keep: true, reason: 'PITR window' });
      continue;
    }
    if (sys.ranges.some(([from, to]) => end > from && start < (to > from ? to : from + 1n))) {
      out.push({ ...base, keep: true, reason: 'needed by a kept backup' });
      continue;
    }
    out.push({ ...base, keep: false, reason: 'before the PITR window and no kept backup needs it' });
  }
  return out;
}
