/**
 * Every chunk a manifest references, looked up exactly in the index, in
 * memory that is a setting rather than a multiple of the repository.
 *
 * Chunk ids are keyed hashes, evenly spread, so they split into ranges by
 * their bytes 8–11 (bytes 0–7 key the id table's slots, which must stay
 * spread within a range). For each range in turn the index objects are
 * scanned and the ids of that range put in an exact table with the pack that
 * holds each; then every manifest is read and each of its ids in the range
 * looked up. A repository whose index fits the table takes one pass, as
 * before; a larger one takes as many passes as ranges — time traded for
 * memory, chosen by `memoryBytes`.
 *
 * The first pass also surveys: it checks each index object and manifest,
 * numbers every pack the index lists and how far its chunks reach, and counts
 * the entries, from which the remaining ranges are planned. A range whose ids
 * overflow the table is split in two before anything of it is reported.
 */
import { ID_BYTES } from '../format/chunk-codec.js';
import { CofferError, CorruptObjectError, MissingObjectError } from '../errors.js';
import { scanIndex } from '../format/index-file.js';
import { chunkIdBytes, chunkIdsOf, type TreeEntry } from '../format/manifest.js';
import { IdTable } from '../repository/id-table.js';
import { ReadScratch } from '../repository/read-scratch.js';
import type { Repository } from '../repository/repository.js';
import { LISTED_BY_INDEX, NEEDED, type PackTable } from './pack-table.js';

export interface ReferenceInput {
  indexKeys: readonly string[];
  manifestKeys: readonly string[];
  /** Packs a running collection condemned: a chunk also held elsewhere is located there. */
  condemned: ReadonlySet<string>;
  packs: PackTable;
  /** Bytes the id table may take. */
  memoryBytes: number;
  /** Index entries expected (from what the index objects weigh), to plan the first ranges. */
  expectedEntries: number;
}

export interface ReferenceResult {
  /** Distinct chunks referenced (those listed by no index counted as far as they are told apart: see below). */
  referenced: number;
  indexEntries: number;
  passes: number;
  /** Index objects that could not be read: nothing of theirs counts. */
  badIndexKeys: Set<string>;
  problems: CofferError[];
}

/** Missing references reported one by one; past this, counted in one problem (a lost index can name millions). */
const MISSING_REPORTED = 1000;
/** Missing chunk ids told apart per range, for the count of distinct chunks referenced. */
const MISSING_DISTINCT = 65536;
const SPAN = 2 ** 32;

interface Range {
  lo: number;
  hi: number;
  /** Given the whole table (its expected share overflowed a smaller one). */
  full?: boolean;
}

export async function checkReferences(repo: Repository, input: ReferenceInput): Promise<ReferenceResult> {
  const { packs, condemned } = input;
  const capacity = idCapacity(input.memoryBytes);
  const problems: CofferError[] = [];
  const badIndexKeys = new Set<string>();
  const badManifests = new Set<string>();
  const result: ReferenceResult = { referenced: 0, indexEntries: 0, passes: 0, badIndexKeys, problems };
  let missingReported = 0;
  let missingUnreported = 0;

  const scratch = new ReadScratch();
  // The bases of the page deltas backups reference, wherever their ids fall: looked up after the ranges.
  const wantedBases = new Map<string, Buffer>();
  let queue = split({ lo: 0, hi: SPAN }, rangesFor(input.expectedEntries, capacity));
  let surveyed = false;
  while (queue.length > 0) {
    const range = queue.shift()!;
    const survey = !surveyed;
    result.passes++;
    // Sized for the ids the range should hold (a small repository, a small table), the setting at most.
    const density = surveyed ? result.indexEntries : input.expectedEntries;
    const size = range.full ? capacity : Math.min(capacity, roomFor((density * (range.hi - range.lo)) / SPAN));
    const table = new IdTable(size, MAX_LOAD);
    const packOf = new Int32Array(size);
    let full = false;
    let current = -1;
    let currentCondemned = false;
    /** For entries of the range that are page deltas: table index → base id. */
    const deltaBase = new Map<number, Buffer>();
    for (const key of input.indexKeys) {
      if (badIndexKeys.has(key)) continue;
      const plain = await openIndex(repo, key, survey, (e) => {
        badIndexKeys.add(key);
        problems.push(e);
      });
      if (!plain) continue;
      const namer = `listed by index ${key}`;
      scanIndex(
        plain,
        (sha) => {
          current = packs.number(sha, namer);
          currentCondemned = condemned.has(sha);
          if (survey) packs.mark(current, LISTED_BY_INDEX);
        },
        (bytes, at) => {
          if (survey) {
            result.indexEntries++;
            packs.reach(current, bytes.readUInt32BE(at + ID_BYTES) + bytes.readUInt32BE(at + ID_BYTES + 4));
          }
          if (full || !inRange(bytes, at, range)) return;
          const before = table.count;
          if (before >= size && table.find(bytes, at) < 0) {
            full = true;
            return;
          }
          const i = table.addBytes(bytes, at);
          if (i === before) packOf[i] = current;
          // A chunk also in a condemned pack (one being repacked) is located in its other pack.
          else if (!currentCondemned && condemned.has(packs.shas[packOf[i]!]!)) packOf[i] = current;
        },
        (bytes, entryAt, baseAt) => {
          if (full || !inRange(bytes, entryAt, range)) return;
          const i = table.find(bytes, entryAt);
          if (i >= 0) deltaBase.set(i, Buffer.from(bytes.subarray(baseAt, baseAt + ID_BYTES)));
        },
      );
    }
    surveyed = true;
    if (survey) {
      // The entries are counted now: what is left of the id space is planned from them.
      const rest: Range = { lo: full ? range.lo : range.hi, hi: SPAN };
      queue = rest.lo < rest.hi ? split(rest, rangesFor(Math.ceil((result.indexEntries * (rest.hi - rest.lo)) / SPAN), capacity)) : [];
      if (full) continue;
    } else if (full) {
      // More ids than expected: the range again with the whole table, or in two halves when it had it.
      queue.unshift(...(size < capacity ? [{ ...range, full: true }] : split(range, 2)));
      continue;
    }

    // Every manifest, each id of the range looked up.
    const referenced = new Uint8Array(table.count);
    const missing = new IdTable(MISSING_DISTINCT);
    for (const key of input.manifestKeys) {
      if (badManifests.has(key)) continue;
      let entries: TreeEntry[];
      try {
        // Decompressed into one buffer, manifest after manifest and pass after pass.
        entries = (await repo.readManifestInto(key, scratch)).entries;
      } catch (e) {
        if (!(e instanceof CofferError)) throw e;
        badManifests.add(key);
        problems.push(e);
        continue;
      }
      for (const entry of entries) {
        let ids: Buffer | undefined;
        try {
          ids = chunkIdBytes(entry) ?? (entry.chunks ? chunkIdsOf(entry) : undefined);
        } catch (e) {
          badManifests.add(key);
          problems.push(new CorruptObjectError(key, (e as Error).message));
          break;
        }
        if (!ids) continue;
        for (let at = 0; at + ID_BYTES <= ids.length; at += ID_BYTES) {
          if (!inRange(ids, at, range)) continue;
          const i = table.find(ids, at);
          if (i >= 0) {
            if (referenced[i]) continue;
            referenced[i] = 1;
            result.referenced++;
            packs.mark(packOf[i]!, NEEDED);
            continue;
          }
          if (!missing.has(ids, at)) {
            result.referenced++;
            if (missing.count < MISSING_DISTINCT) missing.addBytes(ids, at);
          }
          if (missingReported >= MISSING_REPORTED) {
            missingUnreported++;
            continue;
          }
          missingReported++;
          problems.push(new MissingObjectError(`chunk ${ids.toString('hex', at, at + ID_BYTES)}`, `referenced by ${key} (${entry.path}) but listed by no index`));
        }
      }
    }
    for (const [i, base] of deltaBase) if (referenced[i]) wantedBases.set(base.toString('latin1'), base);
  }
  await checkBases(repo, input, badIndexKeys, wantedBases, problems);
  if (missingUnreported > 0) problems.push(new MissingObjectError('chunks', `${missingUnreported} more references to chunks listed by no index (the first ${MISSING_REPORTED} are reported one by one)`));
  return result;
}

/**
 * An index object's plaintext, or undefined when it cannot be read (told to
 * `bad` on the survey; later passes skip it). An object gone from the listing
 * too was merged away by a running collection: thrown, for the caller to
 * list and read again (`withIndexRetry`).
 */
async function openIndex(repo: Repository, key: string, survey: boolean, bad: (e: CofferError) => void): Promise<Buffer | undefined> {
  try {
    const plain = await repo.openIndexObject(key);
    // Checked whole before any of it counts, so that every pass sees the same entries.
    if (survey) {
      try {
        scanIndex(plain, () => undefined, () => undefined);
      } catch (e) {
        throw new CorruptObjectError(key, (e as Error).message);
      }
    }
    return plain;
  } catch (e) {
    if (e instanceof MissingObjectError && !(await repo.listIndexKeys()).includes(key)) throw e;
    if (!(e instanceof CofferError)) throw e;
    bad(e);
    return undefined;
  }
}

function inRange(ids: Uint8Array, at: number, range: Range): boolean {
  const v = ((ids[at + 8]! << 24) | (ids[at + 9]! << 16) | (ids[at + 10]! << 8) | ids[at + 11]!) >>> 0;
  return v >= range.lo && v < range.hi;
}

/** A table for about `expected` evenly spread ids: room for the spread too (six standard deviations). */
function roomFor(expected: number): number {
  return Math.ceil(expected * 1.05 + 6 * Math.sqrt(expected) + 256);
}

/** Ranges for `entries` ids, each filling at most 90% of the table (ids spread evenly, not exactly). */
function rangesFor(entries: number, capacity: number): number {
  return Math.max(1, Math.ceil(entries / (capacity * 0.9)));
}

function split(range: Range, n: number): Range[] {
  const out: Range[] = [];
  const width = range.hi - range.lo;
  for (let i = 0; i < n; i++) {
    const lo = range.lo + Math.floor((width * i) / n);
    const hi = range.lo + Math.floor((width * (i + 1)) / n);
    if (hi > lo) out.push({ lo, hi });
  }
  return out;
}

/** Ids per slot of the id table at most: linear probing stays short, and the memory holds a third more ids than at one half. */
const MAX_LOAD = 0.75;

/**
 * How many ids a table of `memoryBytes` holds: an IdTable (32 bytes an id,
 * 8 bytes a slot, slots a power of two with ids filling at most `MAX_LOAD`
 * of them) and 5 bytes an id beside it (its pack, whether referenced). At
 * least 256.
 */
export function idCapacity(memoryBytes: number): number {
  let best = 0;
  for (let slots = 16; slots * 8 < memoryBytes; slots *= 2) {
    best = Math.max(best, Math.min(Math.floor(slots * MAX_LOAD), Math.floor((memoryBytes - slots * 8 - ID_BYTES) / (ID_BYTES + 5))));
  }
  return Math.max(256, best);
}

/**
 * The bases the referenced page deltas need, and theirs in turn, must be
 * indexed too: a restore applies each delta to its base. Their packs count
 * as needed. Memory is a table of those bases (32 bytes and slots each).
 */
async function checkBases(repo: Repository, input: ReferenceInput, bad: ReadonlySet<string>, wanted: Map<string, Buffer>, problems: CofferError[]): Promise<void> {
  const found = new Set<string>();
  let frontier = [...wanted.values()];
  while (frontier.length > 0) {
    const table = new IdTable(frontier.length);
    for (const id of frontier) table.addBytes(id, 0);
    const next = new Map<string, Buffer>();
    for (const key of input.indexKeys) {
      if (bad.has(key)) continue;
      let current = -1;
      scanIndex(
        await repo.openIndexObject(key),
        (sha) => (current = input.packs.number(sha, `listed by index ${key}`)),
        (bytes, at) => {
          if (!table.has(bytes, at)) return;
          found.add(bytes.toString('latin1', at, at + ID_BYTES));
          input.packs.mark(current, NEEDED);
        },
        (bytes, entryAt, baseAt) => {
          if (!table.has(bytes, entryAt)) return;
          const k = bytes.toString('latin1', baseAt, baseAt + ID_BYTES);
          if (!wanted.has(k)) next.set(k, Buffer.from(bytes.subarray(baseAt, baseAt + ID_BYTES)));
        },
      );
    }
    for (const [k, id] of next) wanted.set(k, id);
    frontier = [...next.values()];
  }
  let reported = 0;
  for (const [k, id] of wanted) {
    if (found.has(k)) continue;
    if (reported++ === MISSING_REPORTED) {
      problems.push(new MissingObjectError('chunks', `more bases of page deltas listed by no index (the first ${MISSING_REPORTED} are reported one by one)`));
      break;
    }
    problems.push(new MissingObjectError(`chunk ${id.toString('hex')}`, 'the base of a page delta a backup references, but listed by no index'));
  }
}
