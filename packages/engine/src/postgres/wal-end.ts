/**
 * Where a cluster's WAL of one timeline ends in the repository: the end of
 * its newest whole segment, and how far streamed prefixes (`wal-receive`'s
 * partial segments) reach past it. A receiver that is a synchronous standby
 * acknowledges commits once they are there: a standby promoted in a failover
 * replays up to `end` first (from `wal-fetch`, which serves a streamed prefix
 * for a segment not yet whole), or loses acknowledged commits.
 */
import type { Repository } from '../repository/repository.js';
import { parseWalKey, parseWalStreamName, WAL_SEGMENT } from '../format/wal-record.js';
import { segmentNumber } from './layout.js';
import { listWalKeys } from './wal.js';

export interface RepositoryWalEnd {
  /** The end of the newest whole segment of the timeline, if any. */
  segments?: bigint;
  /** The end of the longest streamed prefix of the timeline, if any. */
  streamed?: bigint;
  /** The later of the two. */
  end?: bigint;
}

export async function repositoryWalEnd(repo: Repository, scope: { stanza: string; systemIdentifier: string }, timeline: number, segmentBytes: number): Promise<RepositoryWalEnd> {
  const tli = timeline.toString(16).toUpperCase().padStart(8, '0');
  const size = BigInt(segmentBytes);
  let segments: bigint | undefined;
  let streamed: bigint | undefined;
  for (const key of await listWalKeys(repo)) {
    const k = parseWalKey(key);
    if (!k?.scope || k.scope.stanza !== scope.stanza || k.scope.systemIdentifier !== scope.systemIdentifier || !k.name.startsWith(tli)) continue;
    if (WAL_SEGMENT.test(k.name)) {
      const end = (segmentNumber(k.name, segmentBytes) + 1n) * size;
      if (segments === undefined || end > segments) segments = end;
      continue;
    }
    const prefix = parseWalStreamName(k.name);
    if (!prefix) continue;
    const end = segmentNumber(prefix.segment, segmentBytes) * size + BigInt(prefix.length);
    if (streamed === undefined || end > streamed) streamed = end;
  }
  const ends = [segments, streamed].filter((x): x is bigint => x !== undefined);
  return { ...(segments !== undefined ? { segments } : {}), ...(streamed !== undefined ? { streamed } : {}), ...(ends.length ? { end: ends.reduce((a, b) => (a > b ? a : b)) } : {}) };
}
