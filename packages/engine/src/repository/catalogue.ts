/**
 * The backup catalogue (format in `format/catalogue-record.ts`): one small
 * sealed summary per backup, read instead of manifests wherever the tree is
 * not needed. `list` of N backups is one listing of each prefix and N small
 * reads.
 */
import pLimit from 'p-limit';
import { CorruptObjectError, MissingObjectError, UnsupportedFormatError } from '../errors.js';
import { carriedProblem } from '../format/carried-sha.js';
import { openJson, sealJson } from './sealed-records.js';
import { CATALOGUE_MAGIC, CATALOGUE_PREFIX, catalogueKey, catalogueRecordSchema, type CatalogueRecord } from '../format/catalogue-record.js';
import { expectedSha } from '../format/keys-layout.js';
import type { BackupManifest, BackupSummary } from '../format/manifest.js';
import { collectList } from '../store/object-store.js';
import type { Repository } from './repository.js';

/** The summary of `m`, stored under `key`. */
export function summarise(key: string, m: BackupManifest): BackupSummary {
  const pg = m.postgres ? (({ backupLabel: _label, tablespaceMap: _map, ...rest }) => rest)(m.postgres) : undefined;
  return {
    key,
    id: (expectedSha(key) ?? key).slice(0, 12),
    kind: m.kind,
    label: m.label,
    startedAt: m.startedAt,
    finishedAt: m.finishedAt,
    hostname: m.hostname,
    source: m.source,
    tags: m.tags,
    stats: m.stats,
    ...(m.parent !== undefined ? { parent: m.parent } : {}),
    ...(m.stanza !== undefined ? { stanza: m.stanza } : {}),
    ...(pg ? { postgres: pg } : {}),
    ...(m.audit ? { audit: m.audit } : {}),
  };
}

/** Why stored summary bytes are damaged, checked without keys; undefined when intact. */
export function catalogueObjectProblem(bytes: Uint8Array): string | undefined {
  return carriedProblem(CATALOGUE_MAGIC, bytes, 'catalogue summary');
}

export async function writeSummary(repo: Repository, manifestKey: string, manifest: BackupManifest): Promise<void> {
  const record: CatalogueRecord = { format: 2, summary: summarise(manifestKey, manifest) };
  await repo.objects.put(catalogueKey(manifestKey), sealJson(repo, CATALOGUE_MAGIC, 'catalogue', record));
}

export function decodeSummary(repo: Repository, key: string, bytes: Uint8Array, manifestKey: string): BackupSummary {
  const record = openJson(repo, CATALOGUE_MAGIC, 'catalogue', 'catalogue summary', key, bytes, catalogueRecordSchema);
  if (record.summary?.key !== manifestKey) throw new CorruptObjectError(key, `holds the summary of ${record.summary?.key}, not of ${manifestKey}`);
  return record.summary;
}

async function summaryOf(repo: Repository, key: string, present: ReadonlySet<string>): Promise<BackupSummary> {
  const ck = catalogueKey(key);
  if (present.has(ck)) return decodeSummary(repo, ck, await repo.objects.get(ck), key);
  return summarise(key, await repo.readManifest(key));
}

/** The summary of the backup whose manifest is `key`: its catalogue object, or the manifest where none was written. */
export async function summaryFor(repo: Repository, key: string): Promise<BackupSummary> {
  const ck = catalogueKey(key);
  let bytes: Uint8Array;
  try {
    bytes = await repo.objects.get(ck);
  } catch (e) {
    if (e instanceof MissingObjectError) return summarise(key, await repo.readManifest(key));
    throw e;
  }
  return decodeSummary(repo, ck, bytes, key);
}

/**
 * A summary, or undefined for a backup whose summary or manifest is damaged:
 * that one is set aside with a warning (check reports it), and every listing
 * that does not need it goes on.
 */
async function summaryOrSetAside(repo: Repository, key: string, present: ReadonlySet<string>): Promise<BackupSummary | undefined> {
  try {
    return await summaryOf(repo, key, present);
  } catch (e) {
    if (!(e instanceof CorruptObjectError || e instanceof UnsupportedFormatError)) throw e;
    repo.onWarning(`set aside: ${e.message}`);
    return undefined;
  }
}

/** The newest backup `matches` accepts, reading summaries from the newest back until one does. */
export async function findNewest(repo: Repository, matches: (b: BackupSummary) => boolean): Promise<BackupSummary | undefined> {
  const [manifests, summaries] = await Promise.all([repo.listBackupKeys(), repo.objects.list(CATALOGUE_PREFIX)]);
  const present = new Set(summaries.map((o) => o.key));
  for (let i = manifests.length - 1; i >= 0; i--) {
    const b = await summaryOrSetAside(repo, manifests[i]!, present);
    if (b && matches(b)) return b;
  }
  return undefined;
}

/** Every backup's summary, oldest first: from the catalogue, or from the manifest where no summary was written. */
export async function listSummaries(repo: Repository): Promise<BackupSummary[]> {
  const [manifests, summaries] = await Promise.all([repo.listBackupKeys(), repo.objects.list(CATALOGUE_PREFIX)]);
  const present = new Set(summaries.map((o) => o.key));
  const limit = pLimit(Math.max(2, Math.min(16, repo.objects.connections)));
  return Promise.all(
    manifests.map((key) => limit(() => summaryOrSetAside(repo, key, present))),
  ).then((all) => all.filter((b): b is BackupSummary => b !== undefined));
}
