/** WAL segments for tests that need no server: a real long page header naming a system, the rest pseudo-random. */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pseudoRandom } from './tree.js';

export const SEGMENT_SIZE = 16 * 1024 * 1024;

/** A WAL segment as PostgreSQL 15 writes one. */
export function segment(systemIdentifier: bigint, seed: number, segSize = SEGMENT_SIZE): Buffer {
  const b = Buffer.alloc(segSize);
  pseudoRandom(4096, seed).copy(b, 64);
  b.writeUInt16LE(0xd110, 0); // XLOG_PAGE_MAGIC of PostgreSQL 15
  b.writeUInt16LE(0x0002 | 0x0004, 2); // XLP_LONG_HEADER | XLP_BKP_REMOVABLE
  b.writeUInt32LE(1, 4);
  b.writeBigUInt64LE(systemIdentifier, 24);
  b.writeUInt32LE(segSize, 32);
  b.writeUInt32LE(8192, 36);
  return b;
}

/** A data directory with only what archive_command and restore_command look at: pg_wal and global/pg_control. */
export async function fakeCluster(pgdata: string, systemIdentifier: bigint): Promise<string> {
  await mkdir(join(pgdata, 'pg_wal', 'archive_status'), { recursive: true });
  await mkdir(join(pgdata, 'global'), { recursive: true });
  const control = Buffer.alloc(8192);
  control.writeBigUInt64LE(systemIdentifier, 0);
  await writeFile(join(pgdata, 'global', 'pg_control'), control);
  return pgdata;
}

/** The name of segment `n` on timeline 1. */
export function segmentName(n: number): string {
  return `00000001${Math.floor(n / 256).toString(16).toUpperCase().padStart(8, '0')}${(n % 256).toString(16).toUpperCase().padStart(8, '0')}`;
}
