/** The schema of a backup's summary (what the catalogue holds), beside `manifest.ts`'s types. */
import * as z from 'zod/mini';
import type { BackupSummary } from './manifest.js';
import { uint } from './record-schema.js';

const statsSchema = z.looseObject({
  files: uint,
  dirs: uint,
  symlinks: uint,
  bytes: uint,
  unchangedFiles: uint,
  newChunks: uint,
  newBytes: uint,
  storedBytes: uint,
  skipped: z.array(z.string()),
  changed: z.optional(z.array(z.string())),
  damaged: z.optional(z.array(z.string())),
  damagedBlocks: z.optional(uint),
});

const postgresSummarySchema = z.looseObject({
  versionNum: uint,
  version: z.string(),
  systemIdentifier: z.string(),
  timeline: uint,
  startLsn: z.string(),
  stopLsn: z.string(),
  stopNextXid: z.string(),
  startTime: z.string(),
  stopTime: z.string(),
  standby: z.boolean(),
  dataChecksums: z.boolean(),
  walSegmentSize: uint,
  dataDirectory: z.string(),
  tablespaces: z.array(z.looseObject({ oid: z.string(), name: z.string(), location: z.string() })),
  archiveChecked: z.optional(z.boolean()),
});

export const backupSummarySchema: z.ZodMiniType<BackupSummary> = z.looseObject({
  key: z.string(),
  id: z.string(),
  kind: z.enum(['files', 'postgres']),
  label: z.string(),
  startedAt: z.string(),
  finishedAt: z.string(),
  hostname: z.string(),
  source: z.string(),
  tags: z.array(z.string()),
  stats: statsSchema,
  parent: z.optional(z.string()),
  stanza: z.optional(z.string()),
  postgres: z.optional(postgresSummarySchema),
  audit: z.optional(z.looseObject({ chain: z.string(), seq: z.int().check(z.nonnegative()) })),
});
