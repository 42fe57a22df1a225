/**
 * A re-encrypting copy: every backup, WAL file, stanza and keep mark of one
 * repository written into another that has keys of its own — a new data key
 * and a new chunk-id key — so that nothing in the copy can be opened, or
 * recognised, with the keys of the first. This is the answer to a leaked
 * data key or chunk-id key (a leaked *wrapping* key needs only a new
 * wrapping: `key add`, `key remove`): the old repository's objects stay
 * readable to whoever holds its keys, so the copy is made, checked, and the
 * old one retired.
 *
 * Unlike `mirror`, nothing is copied as it is: every chunk is fetched,
 * opened and checked (AEAD tag and keyed id) with the source's keys, then
 * given its id under the destination's chunk-id key and sealed under its data
 * key, through the same pack writer as a backup. Chunk boundaries stay as
 * they were (the destination takes the source's chunker settings), so later
 * backups into the copy deduplicate against it. Manifests keep their tree,
 * labels, times, tags and PostgreSQL facts; their chunk lists name the new
 * ids and their parents the new manifests. WAL records keep their names and
 * facts, with new chunks. Not carried over: audit trails (the copy starts its
 * own), verification and damage records (they describe the source's objects),
 * and superseded streamed WAL prefixes.
 *
 * Order keeps the copy consistent if a run stops part way (packs before the
 * index or record naming them; stanzas, then WAL, then each backup's chunks,
 * its manifest, its keep mark), and a second run resumes: it passes over the
 * WAL records and backups (same label, kind, source and start) the copy holds.
 *
 * In `postgres/` because it must carry stanzas and WAL; it copies files
 * backups as well. Memory: one backup's restore plan at a time, one batch of
 * WAL files, and the destination's chunk index.
 */
import pLimit from 'p-limit';
import { asBuffer, sha256Hex } from '../bytes.js';
import { CofferError, CorruptObjectError, InvalidArgumentError, MissingObjectError, ObjectConflictError, UnsupportedFormatError } from '../errors.js';
import { ID_BYTES } from '../format/chunk-codec.js';
import type { InitOptions } from '../repository/repository.js';
import { packKey } from '../format/keys-layout.js';
import { setChunkIdBytes, type BackupManifest, type BackupSummary, type TreeEntry } from '../format/manifest.js';
import { parseStanzaKey, STANZA_PREFIX } from '../format/stanza-record.js';
import { parseWalKey, parseWalStreamName, WAL_STREAM, type WalLocation, type WalRecord } from '../format/wal-record.js';
import type { RepositoryConfig } from '../format/config.js';
import { PackWriter, type SealedBlob } from '../content/pack-writer.js';
import { sealInGroups } from '../content/sealed-groups.js';
import { ChunkIndex } from '../repository/chunk-index.js';
import { keepKeys, readKeepMarks, setKeepMark } from '../repository/keep-marks.js';
import { Lease } from '../repository/leases.js';
import type { Repository } from '../repository/repository.js';
import { decodeStanzaRecord, decodeWalRecord, encodeStanzaRecord, encodeWalRecord } from '../repository/sealed-records.js';
import { chainDepths, DEFAULT_PLAN, filesUsing, locateChunks, planFetches } from '../restore/plan.js';
import { listWalKeys, walRecordBytes } from './wal.js';
import { sealWal } from './wal-seal.js';

export interface ReencryptOptions {
  /** Pack ranges fetched at once (default 4). */
  concurrency?: number;
  /** Time-to-live of the leases held on both repositories (default 60 s). */
  leaseTtlMs?: number;
  onProgress?: (message: string) => void;
}

export interface ReencryptReport {
  /** Source manifest key → the copy's, for every backup the copy holds after this run. */
  backups: { from: string; to: string; label: string; copied: boolean }[];
  backupsCopied: number;
  /** Distinct chunks opened at the source, and those the copy lacked and got. */
  chunksRead: number;
  chunksWritten: number;
  /** Bytes of chunk content read (before compression), and bytes this run stored in the copy (packs and indexes). */
  bytesRead: number;
  storedBytes: number;
  walFiles: number;
  walPresent: number;
  stanzaRecords: number;
  keepMarks: number;
}

/**
 * The settings a re-encrypted copy is made with: the source's chunker,
 * relation chunker, compression and pack size, so later backups into the copy
 * cut and deduplicate as they did in the source.
 */
export function reencryptInitOptions(config: RepositoryConfig): InitOptions {
  const { minSize, avgSize, maxSize } = config.chunker;
  return {
    chunker: { minSize, avgSize, maxSize },
    relationChunkSize: config.relationChunker?.size ?? 0,
    ...(config.relationChunker ? { relationGroupBytes: config.relationChunker.groupBytes } : {}),
    compressionLevel: config.compression.level,
    packSize: config.packSize,
    pageDeltaDepth: config.pageDeltas?.depth ?? 0,
  };
}

/** Copies everything of `from` into `to` (another repository, with other keys), re-sealed; see the module comment. */
export async function reencryptRepository(from: Repository, to: Repository, options: ReencryptOptions = {}): Promise<ReencryptReport> {
  checkPair(from, to);
  const progress = options.onProgress ?? (() => undefined);
  const leaseOptions = { purpose: 'reencrypt', ...(options.leaseTtlMs !== undefined ? { ttlMs: options.leaseTtlMs } : {}) };
  const sourceLease = await Lease.acquire(from, leaseOptions);
  try {
    const targetLease = await Lease.acquire(to, leaseOptions);
    try {
      const report: ReencryptReport = { backups: [], backupsCopied: 0, chunksRead: 0, chunksWritten: 0, bytesRead: 0, storedBytes: 0, walFiles: 0, walPresent: 0, stanzaRecords: 0, keepMarks: 0 };
      report.stanzaRecords = await copyStanzas(from, to);
      await copyWal(from, to, report, progress);
      await copyBackups(from, to, report, options.concurrency ?? 4, progress);
      return report;
    } finally {
      await targetLease.release();
    }
  } finally {
    await sourceLease.release();
  }
}

/** Refuses a destination that is the source, or a copy that shares its chunk-id key (a plain mirror): that would keep the keys being replaced. */
function checkPair(from: Repository, to: Repository): void {
  if (from.config.format < 2) throw new UnsupportedFormatError(`${from.location}/config`, `a format ${from.config.format} repository: re-encrypting copies format 2 records (stanzas, WAL by cluster); run a backup and 'coffer stanza create' under this version first`);
  if (to.config.repositoryId === from.config.repositoryId) {
    throw new InvalidArgumentError('--to', `${to.location} is the same repository as ${from.location} (or a mirror of it): a re-encrypted copy needs a repository of its own, made with new keys`);
  }
  const probe = Buffer.from('coffer re-encryption probe');
  if (from.objects.codec.id(probe).equals(to.objects.codec.id(probe))) {
    throw new InvalidArgumentError('--to', `${to.location} has the same chunk-id key as ${from.location}: it is not a repository made with new keys`);
  }
  if (to.config.relationChunker === undefined && from.config.relationChunker !== undefined) {
    throw new InvalidArgumentError('--to', `${to.location} cuts relation files with FastCDC, ${from.location} in fixed pages: make the copy with the source's settings (as 'mirror --reencrypt' does when the destination is empty)`);
  }
}

/** Every stanza record, re-sealed under the same name: the copy knows each cluster's whole history. */
async function copyStanzas(from: Repository, to: Repository): Promise<number> {
  let written = 0;
  for (const { key } of await from.objects.list(STANZA_PREFIX)) {
    if (!parseStanzaKey(key) || (await to.objects.head(key))) continue;
    const record = decodeStanzaRecord(from, key, asBuffer(await from.objects.get(key)));
    try {
      if ((await to.objects.put(key, encodeStanzaRecord(to, record))) === 'created') written++;
    } catch (e) {
      if (!(e instanceof ObjectConflictError)) throw e;
    }
  }
  return written;
}

/** WAL files written per batch: their packs first, then their records. */
const WAL_BATCH_FILES = 64;
const WAL_BATCH_BYTES = 64 * 1024 * 1024;

/**
 * Every archived WAL file, and for a segment never archived whole its longest
 * streamed prefix, reassembled and checked against its SHA-256 at the source,
 * then cut and sealed anew. Records keep their names and facts.
 */
async function copyWal(from: Repository, to: Repository, report: ReencryptReport, progress: (m: string) => void): Promise<void> {
  const keys = await listWalKeys(from);
  const present = new Set(await listWalKeys(to));
  const whole = new Set(keys.filter((k) => !WAL_STREAM.test(k.slice(k.lastIndexOf('/') + 1))));
  const longest = new Map<string, { key: string; length: number }>();
  const wanted: string[] = [];
  for (const key of keys) {
    const name = key.slice(key.lastIndexOf('/') + 1);
    const stream = parseWalStreamName(name);
    if (!stream) {
      wanted.push(key);
      continue;
    }
    const segmentKey = key.slice(0, key.lastIndexOf('/') + 1) + stream.segment;
    if (whole.has(segmentKey)) continue;
    const best = longest.get(segmentKey);
    if (!best || stream.length > best.length) longest.set(segmentKey, { key, length: stream.length });
  }
  wanted.push(...[...longest.values()].map((b) => b.key));
  const todo = wanted.filter((k) => {
    if (!present.has(k)) return true;
    report.walPresent++;
    return false;
  });
  if (todo.length > 0) progress(`WAL: ${todo.length} file(s) to re-seal, ${report.walPresent} already in the copy`);

  let batch: { key: string; record: WalRecord; ids: Buffer[]; sealed: SealedBlob[] }[] = [];
  let batchBytes = 0;
  const flush = async () => {
    if (batch.length === 0) return;
    const writer = new PackWriter(to, new ChunkIndex(), { indexed: false });
    // Each file's blobs as sealed (a piece two files share is stored with each: WAL pieces rarely repeat across files).
    for (const f of batch) await writer.add(f.sealed);
    const stats = await writer.finish();
    report.storedBytes += stats.storedBytes;
    const where = new Map<string, WalLocation>();
    for (const p of writer.packs) for (const e of p.entries) where.set(e.id.toString('hex'), [p.sha, e.offset, e.length, e.rawLength]);
    for (const f of batch) {
      const chunks = f.ids.map((id) => id.toString('hex'));
      const locations: Record<string, WalLocation> = {};
      for (const id of chunks) locations[id] = where.get(id)!;
      const record: WalRecord = { ...f.record, chunks, locations };
      await to.objects.put(f.key, encodeWalRecord(to, record));
      report.walFiles++;
    }
    batch = [];
    batchBytes = 0;
  };
  for (const key of todo) {
    const parsed = parseWalKey(key);
    if (!parsed?.scope) throw new UnsupportedFormatError(key, 'a WAL record of the format 1 layout (no stanza): it cannot be re-encrypted into a stanza');
    const stored = await from.objects.getIfPresent(key);
    if (!stored) continue; // removed since the listing (a superseded streamed prefix)
    const record = decodeWalRecord(from, key, asBuffer(stored));
    const bytes = await walRecordBytes(from, parsed.scope, parsed.name, key, record);
    const sealed = sealWal(to.objects.codec, bytes, 0, record.sha256);
    batch.push({ key, record, ids: sealed.ids, sealed: sealed.sealed });
    batchBytes += bytes.length;
    if (batch.length >= WAL_BATCH_FILES || batchBytes >= WAL_BATCH_BYTES) await flush();
  }
  await flush();
}

/** A backup's identity across the two repositories (the manifest's name differs: its sealed bytes do). */
function sameBackup(a: Pick<BackupSummary, 'label' | 'kind' | 'source' | 'startedAt'>, b: Pick<BackupSummary, 'label' | 'kind' | 'source' | 'startedAt'>): boolean {
  return a.label === b.label && a.kind === b.kind && a.source === b.source && a.startedAt === b.startedAt;
}

async function copyBackups(from: Repository, to: Repository, report: ReencryptReport, concurrency: number, progress: (m: string) => void): Promise<void> {
  // Parents before children: a copied manifest names its parent's new key.
  const sources = (await from.listBackups()).sort((a, b) => (a.startedAt < b.startedAt ? -1 : a.startedAt > b.startedAt ? 1 : a.key < b.key ? -1 : 1));
  const copies = await to.listBackups();
  const newKey = new Map<string, string>();
  const marks = await readKeepMarks(from);
  const copyMarks = await keepKeys(to);
  for (const [i, s] of sources.entries()) {
    const there = copies.find((c) => sameBackup(c, s));
    let key: string;
    if (there) key = there.key;
    else {
      progress(`backup ${i + 1}/${sources.length}: ${s.label} (${s.id})`);
      const manifest = await from.readManifest(s.key);
      await copyChunks(from, to, s.key, manifest, report, concurrency);
      const parent = manifest.parent !== undefined ? newKey.get(manifest.parent) : undefined;
      const copy: BackupManifest = { ...manifest, entries: manifest.entries };
      delete copy.audit;
      delete copy.parent;
      if (parent !== undefined) copy.parent = parent;
      key = await to.writeManifest(copy);
      report.backupsCopied++;
    }
    newKey.set(s.key, key);
    report.backups.push({ from: s.key, to: key, label: s.label, copied: !there });
    const mark = marks.get(s.key);
    if (mark?.keep && !copyMarks.has(key)) {
      await setKeepMark(to, key, true, mark.note);
      report.keepMarks++;
    }
  }
}

/**
 * Moves one backup's chunks: each distinct chunk fetched (pack ranges merged
 * as a restore plans them), opened and checked with the source's keys, given
 * its new id, and — unless the copy holds that id already — sealed into the
 * copy's packs: relation pages grouped into page packs, everything else into
 * ordinary ones. The entries' chunk lists are then rewritten to the new ids
 * (in place: `manifest` is the caller's to write).
 */
async function copyChunks(from: Repository, to: Repository, manifestKey: string, manifest: BackupManifest, report: ReencryptReport, concurrency: number): Promise<void> {
  const files = manifest.entries.filter((e): e is TreeEntry => e.type === 'file' && e.linkTo === undefined && 'chunks' in e);
  const lookup = await locateChunks(from, files, manifestKey);
  const { table } = lookup;
  if (lookup.unindexed.length > 0) {
    throw new MissingObjectError(`chunk ${table.hex(lookup.unindexed[0]!)}`, `no index lists it (${lookup.unindexed.length} chunk(s) of ${manifestKey} missing); nothing of this backup was written to the copy`, filesUsing(files, lookup, lookup.unindexed));
  }
  // Pages stored as deltas are read chain step by chain step (a base before what is taken against it) and
  // stored whole in the copy: their new ids are known only once their pages are, and a base is kept in memory
  // until the last delta taken against it is read.
  const depth = chainDepths(lookup, manifestKey);
  const isBase = new Uint8Array(table.count);
  for (const b of lookup.base) if (b >= 0) isBase[b] = 1;
  let deepest = 0;
  for (const d of depth) deepest = Math.max(deepest, d);
  const basePlain = new Map<number, Buffer>();
  const isPage = new Uint8Array(table.count);
  for (let c = 0; c < table.count; c++) {
    const firstUse = lookup.chunkUses[lookup.chunkUseStart[c]!]!;
    // A base no file uses is a page all the same: only pages are stored as deltas.
    isPage[c] = isBase[c] || lookup.base[c]! >= 0 || files[lookup.useFile[firstUse]!]!.chunking === 'fixed' ? 1 : 0;
  }
  const newIds = Buffer.alloc(table.count * ID_BYTES);
  // Every chunk the copy holds, pages and the rest: a chunk is stored there once.
  const index = await to.loadIndex();
  const plainWriter = new PackWriter(to, index);
  const pageWriter = new PackWriter(to, index, { pages: true });
  const groupBytes = to.config.relationChunker?.groupBytes ?? 0;
  // The destination codec's slab is shared: sealing and handing blobs to a writer happen one range at a time.
  const sealing = pLimit(1);
  const fetching = pLimit(Math.max(1, concurrency));
  let failed: unknown;
  for (let phase = 0; phase <= deepest && !failed; phase++) {
    await Promise.all(
      planFetches(lookup, DEFAULT_PLAN, (c) => depth[c] === phase).map((r) =>
        fetching(async () => {
          if (failed) return;
          try {
            const key = packKey(r.pack);
            let data: Buffer;
            try {
              data = asBuffer(await from.objects.get(key, r.whole ? undefined : { offset: r.offset, length: r.length }));
            } catch (e) {
              if (e instanceof MissingObjectError) throw new MissingObjectError(key, `not found in ${from.location}`, filesUsing(files, lookup, r.chunks));
              throw e;
            }
            if (r.whole && sha256Hex(data) !== r.pack) throw new CorruptObjectError(key, 'SHA-256 of its bytes does not match its name', filesUsing(files, lookup, r.chunks));
            const pieces: { c: number; plain: Buffer }[] = [];
            for (const c of r.chunks) {
              const at = table.offset[c]! - r.offset;
              const blob = data.subarray(at, at + table.length[c]!);
              const plain = phase === 0 ? from.objects.codec.decode(table.id(c), blob) : from.objects.codec.decodeDelta(table.id(c), blob, basePlain.get(lookup.base[c]!)!);
              if (typeof plain === 'string') throw new CorruptObjectError(key, plain, filesUsing(files, lookup, [c]));
              pieces.push({ c, plain: Buffer.from(plain) });
              if (isBase[c]) basePlain.set(c, pieces[pieces.length - 1]!.plain);
            }
            await sealing(async () => {
              const codec = to.objects.codec;
              codec.startBatch();
              const page = { ids: [] as Buffer[], pieces: [] as Buffer[] };
              const plainBlobs: SealedBlob[] = [];
              const ids = pieces.map(({ plain }) => codec.id(plain));
              const claimedPages = pageWriter.claim(ids.filter((_, i) => isPage[pieces[i]!.c]));
              const claimedPlain = plainWriter.claim(ids.filter((_, i) => !isPage[pieces[i]!.c]));
              let p = 0;
              let q = 0;
              pieces.forEach(({ c, plain }, i) => {
                const id = ids[i]!;
                id.copy(newIds, c * ID_BYTES);
                report.chunksRead++;
                report.bytesRead += plain.length;
                if (isPage[c]) {
                  if (!claimedPages[p++]) return;
                  page.ids.push(id);
                  page.pieces.push(plain);
                } else {
                  if (!claimedPlain[q++]) return;
                  plainBlobs.push({ blob: codec.encode(id, plain), chunks: [{ id, rawLength: plain.length }] });
                }
                report.chunksWritten++;
              });
              await plainWriter.add(plainBlobs);
              await pageWriter.add(sealInGroups(codec, page.ids, page.pieces, groupBytes));
            });
          } catch (e) {
            failed ??= e;
          }
        }),
      ),
    );
    // The bases of this step's deltas are read: those of deeper steps only are kept.
    for (const c of [...basePlain.keys()]) if (depth[c]! < phase) basePlain.delete(c);
  }
  if (failed) {
    await Promise.all([plainWriter.abandon(), pageWriter.abandon()]);
    throw failed instanceof CofferError ? failed : new CorruptObjectError(manifestKey, (failed as Error).message);
  }
  for (const w of [plainWriter, pageWriter]) report.storedBytes += (await w.finish()).storedBytes;
  for (let f = 0; f < files.length; f++) {
    const start = lookup.fileStart[f]!;
    const end = lookup.fileStart[f + 1]!;
    const ids = Buffer.allocUnsafe((end - start) * ID_BYTES);
    for (let u = start; u < end; u++) newIds.copy(ids, (u - start) * ID_BYTES, lookup.useChunk[u]! * ID_BYTES, (lookup.useChunk[u]! + 1) * ID_BYTES);
    setChunkIdBytes(files[f]!, ids);
  }
}
