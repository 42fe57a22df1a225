/**
 * The backup catalogue: beside each manifest `backups/<label>-<sha>`, a small
 * summary `catalogue/<label>-<sha>` (same name, the manifest's SHA-256) with
 * what listing, choosing a backup, finding a parent and retention need — id,
 * label, kind, stanza, times, LSNs, timeline, sizes, parent, tags — so none of
 * them downloads whole manifests (a manifest lists every chunk of a backup).
 *
 * Stored like WAL records: "CCS1" ‖ SHA-256 of what follows ‖ sealed JSON
 * (its name carries the manifest's SHA-256, not its own). The summary names
 * its manifest inside its authenticated body, so it cannot be moved to
 * another backup's name. Written after the manifest: a backup exists once
 * its manifest does, and a manifest without a summary (a crash between the
 * two, or a format 1 repository) is summarised from the manifest itself.
 */
import { BACKUP_PREFIX } from './keys-layout.js';
import type { BackupSummary } from './manifest.js';
import * as z from 'zod/mini';
import { backupSummarySchema } from './manifest-schema.js';

export const CATALOGUE_PREFIX = 'catalogue/';
export const CATALOGUE_MAGIC = Buffer.from('CCS1');

export function catalogueKey(manifestKey: string): string {
  return `${CATALOGUE_PREFIX}${manifestKey.slice(BACKUP_PREFIX.length)}`;
}

export function manifestKeyOf(catalogueKey: string): string {
  return `${BACKUP_PREFIX}${catalogueKey.slice(CATALOGUE_PREFIX.length)}`;
}

/** What a summary object holds: the summary and the format it was written in. */
export interface CatalogueRecord {
  format: 2;
  summary: BackupSummary;
}

/** What a summary object must hold for its readers (fields of later versions pass through). */
export const catalogueRecordSchema: z.ZodMiniType<CatalogueRecord> = z.looseObject({
  format: z.literal(2),
  summary: backupSummarySchema,
});
