/**
 * Retention at scale: `coffer check`, `coffer expire` and `coffer gc` on a
 * synthetic repository of many millions of chunks, each command in a
 * process of its own under GNU time (time and peak RSS).
 *
 * The repository is real where the two commands look: a key ring, sealed
 * index objects listing every chunk, sealed manifests and catalogue
 * summaries naming them. Only the packs are stand-ins: sparse files of the
 * size their index entries and trailer add up to, under the names the index
 * gives them — check without --read-data and expire never read packs, and
 * gc reads one only to repack it. The layout
 * makes every pack wholly live or wholly dead, so nothing is repacked and
 * the figures are those of the mark (reading every index object twice and
 * every kept manifest once), the index rewrite and the deletes.
 *
 * Shape: the chunks fall into `SEGMENTS` segments of consecutive ids; backup
 * k (one a day) names segments k and k + 1, so each chunk is shared by two
 * backups, as an unchanged page is shared by consecutive backups. The seeds'
 * tiers (hot 14 days, warm 30 days, cold 6 months weekly) then keep about a
 * quarter of the backups, and gc deletes the segments only expired backups
 * named.
 */
import { createCipheriv } from 'node:crypto';
import { mkdir, open, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { backupLabel, FileStore, LocalKeyProvider, packKey, Repository, type BackupManifest, type IndexedPack, type PackEntry, type TreeEntry } from '@coffer/engine';
import { run, treeBytes } from './compare/proc.js';

const COFFER_BIN = fileURLToPath(new URL('../../packages/cli/bin/coffer.js', import.meta.url));
const ID_BYTES = 32;
/** Backups are one more than this less one: 199 daily backups, six and a half months. */
const SEGMENTS = 200;
const PACKS_PER_SEGMENT = 250;
/** At most this many entries per index object, as gc's consolidation writes them. */
const ENTRIES_PER_INDEX_OBJECT = 190_000;
/** Chunks per manifest file entry (a 16 MiB relation segment of 8 KiB pages holds 2048). */
const CHUNKS_PER_FILE = 2048;
const STORED_CHUNK_BYTES = 6 * 1024;
const RAW_CHUNK_BYTES = 8 * 1024;
const FIRST_DAY = Date.UTC(2026, 0, 1, 2, 0, 0);
const DAY_MS = 86_400_000;
const TIERS = ['--keep-hot', '14', '--keep-warm', '30', '--keep-cold', '6', '--keep-min', '3'];

export interface GcStep {
  ms: number;
  maxRssMiB: number | undefined;
}

export interface GcFigures {
  chunks: number;
  backups: number;
  indexObjects: number;
  packs: number;
  /** Real bytes of index objects and manifests (packs are sparse stand-ins). */
  metadataBytesBefore: number;
  metadataBytesAfter: number;
  generateSeconds: number;
  /** `coffer check` (no --read-data) of the whole repository, before expire. */
  check: GcStep & { ok: boolean; passes: number; chunksReferenced: number; problems: number };
  expire: GcStep & { keptBackups: number; removedBackups: number };
  gc: GcStep & {
    deletedPacks: number;
    deletedBytes: number;
    packBytes: number;
    repackedPacks: number;
    indexObjectsBefore: number;
    indexObjectsAfter: number;
    filterBytes: number;
    falsePositiveRate: number;
    recheckedPacks: number;
    falseLiveChunks: number;
  };
  /** Chunks the kept backups name, by construction; and what the index lists after gc. */
  liveChunks: number;
}

/** Segment `s`'s chunk ids: AES-CTR keystream (uniform, as keyed HMAC ids are), the same for the same segment. */
function segmentIds(s: number, perSegment: number): Buffer {
  const iv = Buffer.alloc(16);
  iv.writeUInt32BE(s, 0);
  const c = createCipheriv('aes-128-ctr', Buffer.alloc(16, 7), iv);
  return Buffer.concat([c.update(Buffer.alloc(perSegment * ID_BYTES)), c.final()]);
}

function packSha(s: number, p: number): string {
  const iv = Buffer.alloc(16);
  iv.writeUInt32BE(s, 0);
  iv.writeUInt32BE(p, 4);
  iv.writeUInt32BE(0xffffffff, 8);
  const c = createCipheriv('aes-128-ctr', Buffer.alloc(16, 9), iv);
  return c.update(Buffer.alloc(32)).toString('hex');
}

/** Bytes of a pack's trailer of `n` chunks: sealed list of (id, offset, length, rawLength), and its length. */
function trailerBytes(n: number): number {
  return 8 + n * (ID_BYTES + 12) + 40 + 4;
}

/** A stand-in for a pack: a sparse file of the pack's size under its name. */
async function placePack(root: string, sha: string, size: number): Promise<void> {
  const path = join(root, ...packKey(sha).split('/'));
  await mkdir(dirname(path), { recursive: true });
  const fh = await open(path, 'w');
  try {
    await fh.truncate(size);
  } finally {
    await fh.close();
  }
}

async function writeSegment(repo: Repository, root: string, s: number, ids: Buffer, perSegment: number): Promise<{ indexObjects: number; packs: number }> {
  const perPack = Math.ceil(perSegment / PACKS_PER_SEGMENT);
  let batch: IndexedPack[] = [];
  let batchEntries = 0;
  let indexObjects = 0;
  let packs = 0;
  const flush = async () => {
    if (batch.length === 0) return;
    await repo.writeIndexObject(batch, true);
    indexObjects++;
    batch = [];
    batchEntries = 0;
  };
  for (let first = 0, p = 0; first < perSegment; first += perPack, p++) {
    const n = Math.min(perPack, perSegment - first);
    const entries: PackEntry[] = [];
    for (let j = 0; j < n; j++) {
      const at = (first + j) * ID_BYTES;
      entries.push({ id: ids.subarray(at, at + ID_BYTES), offset: j * STORED_CHUNK_BYTES, length: STORED_CHUNK_BYTES, rawLength: RAW_CHUNK_BYTES });
    }
    const sha = packSha(s, p);
    await placePack(root, sha, n * STORED_CHUNK_BYTES + trailerBytes(n));
    packs++;
    if (batchEntries + n > ENTRIES_PER_INDEX_OBJECT) await flush();
    batch.push({ sha, entries });
    batchEntries += n;
  }
  await flush();
  return { indexObjects, packs };
}

function fileEntries(ids: Buffer, at: Date): TreeEntry[] {
  const mtimeNs = `${BigInt(at.getTime()) * 1_000_000n}`;
  const entries: TreeEntry[] = [{ path: '.', type: 'dir', mode: 0o700, uid: 0, gid: 0, mtimeNs }];
  const n = ids.length / ID_BYTES;
  for (let first = 0, f = 0; first < n; first += CHUNKS_PER_FILE, f++) {
    const count = Math.min(CHUNKS_PER_FILE, n - first);
    const chunks: string[] = [];
    for (let j = 0; j < count; j++) chunks.push(ids.toString('hex', (first + j) * ID_BYTES, (first + j + 1) * ID_BYTES));
    entries.push({ path: `base/16384/${16384 + f}`, type: 'file', mode: 0o600, uid: 0, gid: 0, mtimeNs, size: count * RAW_CHUNK_BYTES, chunks, chunking: 'fixed' });
  }
  return entries;
}

async function writeBackup(repo: Repository, k: number, ids: Buffer): Promise<void> {
  const started = new Date(FIRST_DAY + k * DAY_MS);
  const finished = new Date(started.getTime() + 60_000);
  const chunks = ids.length / ID_BYTES;
  const manifest: BackupManifest = {
    format: repo.config.format,
    kind: 'files',
    label: backupLabel(started),
    startedAt: started.toISOString(),
    finishedAt: finished.toISOString(),
    hostname: 'synthetic',
    source: '/synthetic/cluster',
    tags: [],
    stats: { files: Math.ceil(chunks / CHUNKS_PER_FILE), dirs: 1, symlinks: 0, bytes: chunks * RAW_CHUNK_BYTES, unchangedFiles: 0, newChunks: chunks / 2, newBytes: (chunks / 2) * RAW_CHUNK_BYTES, storedBytes: (chunks / 2) * STORED_CHUNK_BYTES, skipped: [] },
    entries: fileEntries(ids, started),
  };
  await repo.writeManifest(manifest);
}

async function metadataBytes(root: string): Promise<number> {
  return treeBytes(root, (rel) => rel === 'data' || rel.startsWith('data/'));
}

export async function gcFigures(work: string, chunks: number, log: (line: string) => void): Promise<GcFigures> {
  const root = join(work, 'gc-repo');
  await rm(root, { recursive: true, force: true });
  await mkdir(work, { recursive: true });
  const keyFile = join(work, 'gc.key');
  await writeFile(keyFile, LocalKeyProvider.newKeyFileContent(), { mode: 0o600 });
  const repo = await Repository.init(new FileStore(root), await LocalKeyProvider.fromKeyFile(keyFile));
  const perSegment = Math.floor(chunks / SEGMENTS);
  const t0 = performance.now();
  let indexObjects = 0;
  let packs = 0;
  let previous = segmentIds(0, perSegment);
  for (let s = 0; s < SEGMENTS; s++) {
    const w = await writeSegment(repo, root, s, previous, perSegment);
    indexObjects += w.indexObjects;
    packs += w.packs;
    if (s + 1 < SEGMENTS) {
      const next = segmentIds(s + 1, perSegment);
      await writeBackup(repo, s, Buffer.concat([previous, next]));
      previous = next;
    }
    if (s % 20 === 19) log(`synthetic repository: ${s + 1} of ${SEGMENTS} segments written`);
  }
  const generateSeconds = (performance.now() - t0) / 1000;
  const backups = SEGMENTS - 1;
  const metadataBytesBefore = await metadataBytes(root);

  const env = { COFFER_KEY_FILE: keyFile };
  const coffer = (args: string[]) => run(process.execPath, [COFFER_BIN, '--repo', root, '--quiet', ...args], { env });
  log('check');
  // A check that finds problems exits non-zero, and the benchmark with it: the synthetic repository is sound.
  const c = await coffer(['check', '--json']);
  const checkReport = JSON.parse(c.stdout) as { ok: boolean; passes: number; chunksReferenced: number; problems: unknown[] };
  const now = new Date(FIRST_DAY + (backups - 1) * DAY_MS + 3_600_000).toISOString();
  log(`expire (${TIERS.join(' ')}, --now ${now})`);
  const ex = await coffer(['expire', ...TIERS, '--now', now, '--json']);
  const { removedBackups } = JSON.parse(ex.stdout) as { removedBackups: number };
  const keptBackups = backups - removedBackups;
  log(`gc`);
  const g = await coffer(['gc', '--json']);
  const gcReport = JSON.parse(g.stdout) as Record<string, number>;

  // What the kept backups name, from their keys (backup k names segments k and k + 1).
  const after = await Repository.open(new FileStore(root), await LocalKeyProvider.fromKeyFile(keyFile));
  const kept = new Set<number>();
  for (const b of await after.listBackups()) {
    const k = Math.round((Date.parse(b.startedAt) - FIRST_DAY) / DAY_MS);
    kept.add(k).add(k + 1);
  }
  const metadataBytesAfter = await metadataBytes(root);
  await rm(root, { recursive: true, force: true });
  return {
    chunks: perSegment * SEGMENTS,
    backups,
    indexObjects,
    packs,
    metadataBytesBefore,
    metadataBytesAfter,
    generateSeconds,
    check: { ms: c.ms, maxRssMiB: c.maxRssMiB, ok: checkReport.ok, passes: checkReport.passes, chunksReferenced: checkReport.chunksReferenced, problems: checkReport.problems.length },
    expire: { ms: ex.ms, maxRssMiB: ex.maxRssMiB, keptBackups, removedBackups },
    gc: {
      ms: g.ms,
      maxRssMiB: g.maxRssMiB,
      deletedPacks: gcReport.deletedPacks!,
      deletedBytes: gcReport.deletedBytes!,
      packBytes: gcReport.packBytes!,
      repackedPacks: gcReport.repackedPacks!,
      indexObjectsBefore: gcReport.indexObjectsBefore!,
      indexObjectsAfter: gcReport.indexObjectsAfter!,
      filterBytes: gcReport.filterBytes!,
      falsePositiveRate: gcReport.falsePositiveRate!,
      recheckedPacks: gcReport.recheckedPacks!,
      falseLiveChunks: gcReport.falseLiveChunks!,
    },
    liveChunks: kept.size * perSegment,
  };
}
