/**
 * Repair after a lost or damaged pack. Content addressing makes dedup trust
 * the index: a chunk the index lists is never stored again, so an index
 * entry whose pack is gone would let every later backup point at nothing.
 * Repair therefore
 *
 * 1. finds the packs index objects name that are missing (or, with
 *    `readData`, damaged); puts back each one another copy of the
 *    repository holds whole (`from`: a mirror in another region — objects
 *    are immutable and named by their SHA-256, so its copy is the very
 *    object), and rewrites each index object that names one still lost
 *    without it (the new object is written before the old one is removed,
 *    so a crash leaves both, never neither);
 * 2. re-stores what the sources still hold: each path in `sources` is backed
 *    up again with no parent, and every chunk it still has goes back into
 *    the repository — completing older backups that need the same chunks;
 * 3. reports what stays lost: backups some of whose chunks no index lists
 *    (with the files they affect) and WAL files whose packs are gone (or,
 *    with `readData`, damaged), after putting back from `from` what it
 *    holds whole; and
 *    writes a damage record naming those backups, which later backups never
 *    take as their parent (so PostgreSQL pages are stored afresh too).
 */
import { CofferError, CorruptObjectError, InvalidArgumentError, MissingObjectError, NotARepositoryError } from '../errors.js';
import { storedObjectProblem } from '../mirror/mirror.js';
import type { ObjectStore } from '../store/object-store.js';
import type { DamageRecord } from '../format/damage-record.js';
import { CONFIG_KEY, isPageIndexKey, PACK_PREFIX, packKey } from '../format/keys-layout.js';
import { chunkIdsOf } from '../format/manifest.js';
import { WAL_PREFIX } from '../format/wal-record.js';
import { readDamage, writeDamage } from '../repository/damage.js';
import type { Repository } from '../repository/repository.js';
import { decodeWalRecord } from '../repository/sealed-records.js';
import { asBuffer } from '../bytes.js';
import { backupFiles } from '../backup/backup-files.js';
import { verifyPack } from './verify-pack.js';
import { acquireExclusive } from '../gc/exclusive.js';
import { hiddenObjects } from '../repository/hidden.js';

export interface RepairOptions {
  /** Read every pack whole: damaged packs are treated as lost too (default: only missing ones). */
  readData?: boolean;
  /** Directories to back up again, with no parent, so the chunks they still hold are stored again. */
  sources?: readonly string[];
  onProgress?: (message: string) => void;
  /**
   * Another copy of this repository (a mirror): a pack missing or damaged
   * here is copied back from it — checked against its name, and read whole
   * again here — before it is given up as lost. WAL packs too.
   */
  from?: ObjectStore;
  /** Longest wait for a garbage collection (or another repair) to finish first, in milliseconds (default 1 h). */
  maxWaitMs?: number;
}

export interface IncompleteBackup {
  key: string;
  label: string;
  /** Chunks no index lists. */
  missingChunks: number;
  /** Files that need them (up to 20). */
  files: string[];
}

export interface RepairReport {
  /** Objects a plain DELETE had hidden behind a delete marker, made current again (versioned stores). */
  unhidden: string[];
  /** Packs missing or damaged here that were copied back whole from `from`. */
  putBack: string[];
  /** Packs index objects named that are missing or damaged (and not put back). */
  lostPacks: string[];
  /** Index objects rewritten without them. */
  indexesRewritten: number;
  /** Backups made of `sources`. */
  restored: { source: string; key: string }[];
  /** Backups that still cannot be restored in full. */
  incomplete: IncompleteBackup[];
  /** WAL files whose record names a lost (with `readData`: or damaged) pack not put back. */
  lostWal: string[];
  /** The damage record written (when there is damage to record, or an earlier record to clear). */
  damageRecord?: string;
}

export async function repairRepository(repo: Repository, options: RepairOptions = {}): Promise<RepairReport> {
  // Exclusive, like garbage collection: a pack a collection deletes meanwhile is garbage, not lost.
  const { lease } = await acquireExclusive(repo, { purpose: 'repair', maxWaitMs: options.maxWaitMs ?? 60 * 60 * 1000 });
  try {
    return await repairUnderLease(repo, options);
  } finally {
    await lease.release();
  }
}

async function repairUnderLease(repo: Repository, options: RepairOptions): Promise<RepairReport> {
  const say = options.onProgress ?? (() => undefined);
  // First what is hidden, not lost: a pack behind a delete marker is whole in its earlier version.
  const unhidden = await unhideAll(repo, say);
  const present = new Set((await repo.objects.list(PACK_PREFIX)).map((o) => o.key));
  const lost = new Set<string>();
  const putBack: string[] = [];
  const from = options.from;
  if (from) await checkSameRepository(repo, from);
  let indexesRewritten = 0;
  for (const key of await repo.listIndexKeys()) {
    const packs = await repo.readIndexObject(key);
    const keep = [];
    for (const p of packs) {
      const pk = packKey(p.sha);
      if (lost.has(pk)) continue;
      const whole = async () => {
        try {
          await verifyPack(repo, p.sha, p.entries);
          return true;
        } catch (e) {
          if (!(e instanceof CorruptObjectError || e instanceof MissingObjectError)) throw e;
          return false;
        }
      };
      let ok = present.has(pk) && (!options.readData || putBack.includes(pk) || (await whole()));
      if (!ok && from && (await copyBack(repo, from, pk, say)) && (await whole())) {
        putBack.push(pk);
        present.add(pk);
        ok = true;
      }
      if (ok) keep.push(p);
      else lost.add(pk);
    }
    if (keep.length === packs.length) continue;
    say(`${key}: ${packs.length - keep.length} of its ${packs.length} packs are lost; rewriting it without them`);
    if (keep.length > 0) await repo.writeIndexObject(keep, isPageIndexKey(key));
    await repo.objects.delete(key);
    indexesRewritten++;
  }

  const restored: RepairReport['restored'] = [];
  for (const source of options.sources ?? []) {
    say(`backing up ${source} again to store what it still holds`);
    const { key } = await backupFiles(repo, source, { parent: 'none' });
    restored.push({ source, key });
  }

  const index = await repo.loadIndex({ pages: true });
  const incomplete: IncompleteBackup[] = [];
  for (const key of await repo.listBackupKeys()) {
    let manifest;
    try {
      manifest = await repo.readManifest(key);
    } catch (e) {
      if (!(e instanceof CofferError)) throw e;
      incomplete.push({ key, label: key, missingChunks: 0, files: [`(manifest unreadable: ${e.message})`] });
      continue;
    }
    let missing = 0;
    const files: string[] = [];
    for (const e of manifest.entries) {
      if (e.type !== 'file' || !e.chunks) continue;
      const ids = chunkIdsOf(e);
      let lacks = false;
      for (let at = 0; at < ids.length; at += 32) {
        // A page delta needs its whole chain of bases.
        if (index.complete(ids.subarray(at, at + 32))) continue;
        missing++;
        lacks = true;
      }
      if (lacks && files.length < 20) files.push(e.path);
    }
    if (missing > 0) incomplete.push({ key, label: manifest.label, missingChunks: missing, files });
  }

  const lostWal: string[] = [];
  const packsNow = new Set((await repo.objects.list(PACK_PREFIX)).map((o) => o.key));
  // WAL packs are in no index: with `readData`, each is read whole once and checked against its name.
  const walPacks = new Map<string, boolean>();
  const walPackWhole = async (pk: string): Promise<boolean> => {
    if (!options.readData) return true;
    let whole = walPacks.get(pk);
    if (whole === undefined) walPacks.set(pk, (whole = storedObjectProblem(pk, await repo.objects.get(pk)) === undefined));
    return whole;
  };
  for (const { key } of await repo.objects.list(WAL_PREFIX)) {
    const record = decodeWalRecord(repo, key, asBuffer(await repo.objects.get(key)));
    let lacks = false;
    for (const pk of new Set(Object.values(record.locations).map((l) => packKey(l[0])))) {
      if (packsNow.has(pk) && (await walPackWhole(pk))) continue;
      if (from && (await copyBack(repo, from, pk, say))) {
        packsNow.add(pk);
        walPacks.set(pk, true);
        putBack.push(pk);
      } else lacks = true;
    }
    if (lacks) lostWal.push(key);
  }

  const report: RepairReport = { unhidden, putBack, lostPacks: [...lost].sort(), indexesRewritten, restored, incomplete, lostWal };
  const before = await readDamage(repo);
  const hadDamage = before !== undefined && (before.incomplete.length > 0 || before.lostPacks.length > 0);
  if (incomplete.length > 0 || lost.size > 0 || hadDamage) {
    const record: DamageRecord = { format: 2, at: new Date().toISOString(), lostPacks: report.lostPacks, incomplete: incomplete.map((b) => b.key) };
    report.damageRecord = await writeDamage(repo, record);
  }
  return report;
}

/** Refuses a `from` that is not a copy of this repository (its config differs, or it has none). */
async function checkSameRepository(repo: Repository, from: ObjectStore): Promise<void> {
  const theirs = await from.get(CONFIG_KEY).catch((e: unknown) => {
    if (e instanceof MissingObjectError) throw new NotARepositoryError(from.properties.location, 'repair --from needs a copy of this repository (a mirror)');
    throw e;
  });
  if (!asBuffer(theirs).equals(asBuffer(await repo.objects.get(CONFIG_KEY)))) {
    throw new InvalidArgumentError('--from', `${from.properties.location} holds another repository than ${repo.location}: repair copies back only from a mirror of this one`);
  }
}

/**
 * Copies `key` back from `from` when its copy there is intact (its SHA-256
 * matches its name): the damaged object here is deleted first (stores write
 * create-only). False when the mirror lacks it or holds it damaged too.
 */
async function copyBack(repo: Repository, from: ObjectStore, key: string, say: (message: string) => void): Promise<boolean> {
  let bytes: Uint8Array;
  try {
    bytes = await from.get(key);
  } catch (e) {
    if (e instanceof MissingObjectError) return false;
    throw e;
  }
  const damage = storedObjectProblem(key, bytes);
  if (damage) {
    say(`${key}: the copy at ${from.properties.location} is damaged too (${damage})`);
    return false;
  }
  if (await repo.objects.head(key)) await repo.objects.delete(key);
  await repo.objects.put(key, bytes);
  say(`${key}: put back from ${from.properties.location}`);
  return true;
}

/** Makes every lockable object a delete marker hides current again; returns their keys. */
async function unhideAll(repo: Repository, say: (message: string) => void): Promise<string[]> {
  const versions = repo.objects.versions;
  if (!versions) return [];
  const keys: string[] = [];
  for (const h of await hiddenObjects(repo)) {
    say(`${h.key}: hidden by a delete marker; making its earlier version current again`);
    await versions.unhide(h.key);
    keys.push(h.key);
  }
  return keys;
}
