/**
 * `info`: what a repository holds and what it would take to run it down —
 * per stanza the backups (by retention tier when a policy is given), the
 * archived WAL per system and timeline with any gaps, how far back recovery
 * reaches; the repository's size by kind of object, the bytes garbage
 * collection would reclaim (a mark, read-only), and the leases held now.
 */
import { WAL_SEGMENT, parseWalKey, WAL_PREFIX } from '../format/wal-record.js';
import { markLive } from '../gc/mark.js';
import { LeaseObserver, type LeaseState } from '../repository/leases.js';
import type { Repository } from '../repository/repository.js';
import { decideBackups, lineageOf, type RetentionPolicy } from '../retention/policy.js';
import type { BackupSummary } from '../format/manifest.js';
import type { NoncurrentUsage } from '../store/object-store.js';
import { segmentName as layoutSegmentName, segmentNumber } from './layout.js';

export interface WalTimelineInfo {
  stanza: string;
  systemIdentifier: string;
  timeline: number;
  first: string;
  last: string;
  segments: number;
  /** Segments missing between the first and the last, as runs `first…last`. */
  gaps: string[];
}

export interface LineageInfo {
  lineage: string;
  backups: number;
  oldest?: string;
  newest?: string;
  /** With a policy: backups per rule that keeps them (a backup kept by two rules counts in both), and how many it would expire. */
  byRule?: Record<string, number>;
  /** PostgreSQL: the earliest backup end from which WAL runs without a gap to the newest segment (recovery reaches any point from there on). */
  recoverableFrom?: string;
}

export interface RepositoryInfo {
  repositoryId: string;
  location: string;
  format: number;
  lineages: LineageInfo[];
  wal: WalTimelineInfo[];
  /** Bytes and objects per top-level prefix. */
  objects: Record<string, { count: number; bytes: number }>;
  totalBytes: number;
  /** Pack bytes garbage collection would delete now (unreferenced packs), when asked for. */
  reclaimableBytes?: number;
  /** On a versioned bucket: what noncurrent versions and delete markers still hold (space the bucket's lifecycle rules free, not gc). */
  noncurrent?: NoncurrentUsage;
  leases: Pick<LeaseState, 'lease' | 'purpose' | 'mode' | 'host' | 'pid' | 'ttlMs'>[];
}

export interface InfoOptions {
  policy?: RetentionPolicy;
  now?: Date;
  /** Also mark the repository (reads every manifest and WAL record) to report reclaimable bytes. */
  reclaimable?: boolean;
}


function segmentName(tli: number, n: number, segmentBytes: number): string {
  return layoutSegmentName(tli, BigInt(n), segmentBytes);
}

export async function repositoryInfo(repo: Repository, options: InfoOptions = {}): Promise<RepositoryInfo> {
  const all = await repo.objects.list('');
  const objects: RepositoryInfo['objects'] = {};
  let totalBytes = 0;
  for (const o of all) {
    const prefix = o.key.includes('/') ? o.key.slice(0, o.key.indexOf('/') + 1) : o.key;
    const slot = (objects[prefix] ??= { count: 0, bytes: 0 });
    slot.count++;
    slot.bytes += o.size;
    totalBytes += o.size;
  }
  const backups = await repo.listBackups();
  const decisions = options.policy ? new Map(decideBackups(options.policy, { backups, now: options.now ?? new Date() }).map((d) => [d.key, d])) : undefined;

  // WAL per stanza, system and timeline, with gaps; segment sizes from the backups of each system (16 MiB otherwise).
  const segmentBytes = new Map<string, number>();
  for (const b of backups) if (b.postgres) segmentBytes.set(b.postgres.systemIdentifier, b.postgres.walSegmentSize || 16 * 1024 * 1024);
  const lines = new Map<string, { stanza: string; systemIdentifier: string; timeline: number; numbers: number[] }>();
  for (const o of all) {
    if (!o.key.startsWith(WAL_PREFIX)) continue;
    const parsed = parseWalKey(o.key);
    if (!parsed?.scope || !WAL_SEGMENT.test(parsed.name)) continue;
    const timeline = parseInt(parsed.name.slice(0, 8), 16);
    const id = `${parsed.scope.stanza}\0${parsed.scope.systemIdentifier}\0${timeline}`;
    const line = lines.get(id) ?? { ...parsed.scope, timeline, numbers: [] };
    line.numbers.push(Number(segmentNumber(parsed.name, segmentBytes.get(parsed.scope.systemIdentifier) ?? 16 * 1024 * 1024)));
    lines.set(id, line);
  }
  const wal: WalTimelineInfo[] = [];
  for (const line of lines.values()) {
    const size = segmentBytes.get(line.systemIdentifier) ?? 16 * 1024 * 1024;
    const n = [...new Set(line.numbers)].sort((a, b) => a - b);
    const gaps: string[] = [];
    for (let i = 1; i < n.length; i++) {
      if (n[i]! > n[i - 1]! + 1) gaps.push(`${segmentName(line.timeline, n[i - 1]! + 1, size)}…${segmentName(line.timeline, n[i]! - 1, size)}`);
    }
    wal.push({ stanza: line.stanza, systemIdentifier: line.systemIdentifier, timeline: line.timeline, first: segmentName(line.timeline, n[0]!, size), last: segmentName(line.timeline, n[n.length - 1]!, size), segments: n.length, gaps });
  }
  wal.sort((a, b) => (a.stanza + a.systemIdentifier + a.first < b.stanza + b.systemIdentifier + b.first ? -1 : 1));

  const byLineage = new Map<string, BackupSummary[]>();
  for (const b of backups) byLineage.set(lineageOf(b), [...(byLineage.get(lineageOf(b)) ?? []), b]);
  const lineages: LineageInfo[] = [];
  for (const [lineage, list] of byLineage) {
    const info: LineageInfo = { lineage, backups: list.length, oldest: list[0]?.label, newest: list[list.length - 1]?.label };
    if (decisions) {
      const byRule: Record<string, number> = {};
      for (const b of list) {
        const d = decisions.get(b.key)!;
        for (const rule of d.rules) byRule[rule] = (byRule[rule] ?? 0) + 1;
      }
      info.byRule = byRule;
    }
    const pg = list.filter((b) => b.postgres);
    if (pg.length > 0) info.recoverableFrom = recoverableFrom(pg, wal);
    lineages.push(info);
  }

  const observer = new LeaseObserver(repo);
  const leases = (await observer.look()).filter((s) => !s.released).map(({ lease, purpose, mode, host, pid, ttlMs }) => ({ lease, purpose, mode, host, pid, ttlMs }));
  const result: RepositoryInfo = { repositoryId: repo.config.repositoryId, location: repo.location, format: repo.config.format, lineages, wal, objects, totalBytes, leases };
  const noncurrent = await repo.objects.versions?.noncurrent('');
  if (noncurrent && (noncurrent.versions > 0 || noncurrent.deleteMarkers > 0)) result.noncurrent = noncurrent;
  if (options.reclaimable) {
    const mark = await markLive(repo);
    result.reclaimableBytes = [...mark.packs.values()].filter((p) => p.size !== undefined && !p.wal && p.liveEntries === 0).reduce((n, p) => n + p.size!, 0);
  }
  return result;
}

/** The stop time of the oldest backup after whose last segment WAL runs without a gap to the end of its timeline. */
function recoverableFrom(backups: readonly BackupSummary[], wal: readonly WalTimelineInfo[]): string | undefined {
  for (const b of backups) {
    const pg = b.postgres!;
    const line = wal.find((w) => w.systemIdentifier === pg.systemIdentifier && w.timeline === pg.timeline && w.stanza === (b.stanza ?? 'main'));
    if (!line) continue;
    const stop = pg.stopLsn.split('/');
    const stopByte = parseInt(stop[0]!, 16) * 0x100000000 + parseInt(stop[1]!, 16);
    const size = pg.walSegmentSize || 16 * 1024 * 1024;
    const stopSegment = segmentName(pg.timeline, Math.floor((stopByte - 1) / size), size);
    // Continuous from the backup's last segment on: no gap starts at or after it.
    if (stopSegment >= line.first && line.gaps.every((g) => g.slice(0, 24) < stopSegment)) return pg.stopTime;
  }
  return undefined;
}
