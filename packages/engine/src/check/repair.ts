/**
 * Repair after a lost or damaged pack. Content addressing makes dedup trust
 * the index: a chunk the index lists is never stored again, so an index
 * entry whose pack is gone would let every later backup point at nothing.
 * Repair therefore
 *
 * 1. finds the packs index objects name that are missing (or, with
 *    `readData`, damaged), and rewrites each index object that names one
 *    without it (the new object is written before the old one is removed,
 *    so a crash leaves both, never neither);
 * 2. re-stores what the sources still hold: each path in `sources` is backed
 *    up again with no parent, and every chunk it still has goes back into
 *    the repository — completing older backups that need the same chunks;
 * 3. reports what stays lost: backups some of whose chunks no index lists
 *    (with the files they affect) and WAL files whose packs are gone; and
 *    writes a damage record naming those backups, which later backups never
 *    take as their parent (so PostgreSQL pages are stored afresh too).
 */
import { CofferError, CorruptObjectError, MissingObjectError } from '../errors.js';
import type { DamageRecord } from '../format/damage-record.js';
import { isPageIndexKey, PACK_PREFIX, packKey } from '../format/keys-layout.js';
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
  /** Packs index objects named that are missing or damaged. */
  lostPacks: string[];
  /** Index objects rewritten without them. */
  indexesRewritten: number;
  /** Backups made of `sources`. */
  restored: { source: string; key: string }[];
  /** Backups that still cannot be restored in full. */
  incomplete: IncompleteBackup[];
  /** WAL files whose record names a lost pack. */
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
  let indexesRewritten = 0;
  for (const key of await repo.listIndexKeys()) {
    const packs = await repo.readIndexObject(key);
    const keep = [];
    for (const p of packs) {
      const pk = packKey(p.sha);
      let ok = present.has(pk) && !lost.has(pk);
      if (ok && options.readData) {
        try {
          await verifyPack(repo, p.sha, p.entries);
        } catch (e) {
          if (!(e instanceof CorruptObjectError || e instanceof MissingObjectError)) throw e;
          ok = false;
        }
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
        if (index.has(ids.subarray(at, at + 32))) continue;
        missing++;
        lacks = true;
      }
      if (lacks && files.length < 20) files.push(e.path);
    }
    if (missing > 0) incomplete.push({ key, label: manifest.label, missingChunks: missing, files });
  }

  const lostWal: string[] = [];
  const packsNow = new Set((await repo.objects.list(PACK_PREFIX)).map((o) => o.key));
  for (const { key } of await repo.objects.list(WAL_PREFIX)) {
    const record = decodeWalRecord(repo, key, asBuffer(await repo.objects.get(key)));
    if (Object.values(record.locations).some((l) => !packsNow.has(packKey(l[0])))) lostWal.push(key);
  }

  const report: RepairReport = { unhidden, lostPacks: [...lost].sort(), indexesRewritten, restored, incomplete, lostWal };
  const before = await readDamage(repo);
  const hadDamage = before !== undefined && (before.incomplete.length > 0 || before.lostPacks.length > 0);
  if (incomplete.length > 0 || lost.size > 0 || hadDamage) {
    const record: DamageRecord = { format: 2, at: new Date().toISOString(), lostPacks: report.lostPacks, incomplete: incomplete.map((b) => b.key) };
    report.damageRecord = await writeDamage(repo, record);
  }
  return report;
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
