/**
 * An exact second look at what the filter only believes. A Bloom filter at
 * 1% false positives calls about ten chunks of a dead 1,000-chunk pack live:
 * left alone, nearly every dead pack would be repacked — read whole, its
 * "live" chunks copied — instead of deleted. So the ids the filter calls live
 * in mostly dead packs (few: the dead share is what made them candidates) are
 * gathered into an exact table, every manifest is read once more, and only
 * the ids a manifest names (or the bases of page deltas the filter keeps)
 * count as live there. Packs left with none are
 * deleted outright; the others are repacked with only their confirmed chunks.
 *
 * Memory is the table's (64 bytes per id plus 12 bytes per entry) within a
 * budget; packs beyond it keep the filter's answer. WAL chunks need no second
 * look: a pack a WAL record locates chunks in is never a candidate.
 */
import { ID_BYTES } from '../format/chunk-codec.js';
import { IdTable } from '../repository/id-table.js';
import type { Repository } from '../repository/repository.js';
import { forEachManifestId, scanIndexObjects, type MarkResult, type PackUse } from './mark.js';

/** Whether a chunk of a pack counts as live: what repacking copies, and what a collection's sweep takes as kept. */
export type LiveTest = (packSha: string, ids: Uint8Array, at: number) => boolean;

/** Bytes per id the second look holds: the table's id, slots and keys, and the entry that names it. */
const BYTES_PER_ID = 64 + 12;

export interface Confirmation {
  live: LiveTest;
  /** Packs looked at again, and ids the filter called live there that no manifest names. */
  packs: number;
  falseLive: number;
}

/**
 * Looks again at `candidates` (mostly dead packs), fewest maybe-live entries
 * first, as many as `budgetBytes` holds; updates their live counts in place.
 */
export async function confirmLive(repo: Repository, mark: MarkResult, candidates: readonly PackUse[], budgetBytes: number): Promise<Confirmation> {
  const filterTest: LiveTest = (_sha, ids, at) => mark.filter.mayHave(ids, at);
  const capacity = Math.floor(budgetBytes / BYTES_PER_ID);
  const chosen = new Map<string, number>();
  const packs: PackUse[] = [];
  let room = capacity;
  for (const p of [...candidates].sort((a, b) => a.liveEntries - b.liveEntries)) {
    if (p.liveEntries > room) break;
    room -= p.liveEntries;
    chosen.set(p.sha, packs.length);
    packs.push(p);
  }
  if (packs.length === 0) return { live: filterTest, packs: 0, falseLive: 0 };

  const table = new IdTable(Math.max(1, capacity - room));
  // Entry n: table index, pack number, plaintext bytes.
  const entryId = new Int32Array(capacity - room);
  const entryPack = new Int32Array(capacity - room);
  const entryRaw = new Uint32Array(capacity - room);
  let entries = 0;
  let current = -1;
  await scanIndexObjects(
    repo,
    mark.indexObjects,
    (_key, sha) => (current = chosen.get(sha) ?? -1),
    (bytes, at) => {
      // The same pack listed by two index objects: its entries are met twice; the second time finds the table full-counted.
      if (current < 0 || !mark.filter.mayHave(bytes, at) || entries >= entryId.length) return;
      entryId[entries] = table.addBytes(bytes, at);
      entryPack[entries] = current;
      entryRaw[entries] = bytes.readUInt32BE(at + ID_BYTES + 8);
      entries++;
    },
  );

  const named = new Uint8Array(table.count);
  await forEachManifestId(repo, mark.manifests, (ids, at) => {
    const i = table.find(ids, at);
    if (i >= 0) named[i] = 1;
  });
  // A base counts as named for a delta the filter calls live: the mark put every live chain in the filter.
  await scanIndexObjects(
    repo,
    mark.indexObjects,
    () => undefined,
    () => undefined,
    (bytes, entryAt, baseAt) => {
      if (!mark.filter.mayHave(bytes, entryAt)) return;
      const i = table.find(bytes, baseAt);
      if (i >= 0) named[i] = 1;
    },
  );

  for (const p of packs) {
    p.liveEntries = 0;
    p.liveRawBytes = 0;
  }
  let falseLive = 0;
  for (let n = 0; n < entries; n++) {
    if (!named[entryId[n]!]) {
      falseLive++;
      continue;
    }
    const p = packs[entryPack[n]!]!;
    p.liveEntries++;
    p.liveRawBytes += entryRaw[n]!;
  }
  return {
    live: (sha, ids, at) => {
      if (!chosen.has(sha)) return mark.filter.mayHave(ids, at);
      const i = table.find(ids, at);
      return i >= 0 && named[i] === 1;
    },
    packs: packs.length,
    falseLive,
  };
}
