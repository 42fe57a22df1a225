/**
 * The two fields of `global/pg_control` a guard needs after stopping its
 * server: whether it shut down cleanly, and where its last checkpoint is
 * (a clean shutdown's checkpoint is the last record it wrote). The layout
 * has been stable since PostgreSQL 9.x: the system identifier (8 bytes),
 * two version numbers (4 + 4), the state (4, padded to 8), the time (8),
 * then the checkpoint's position (8), in the machine's byte order.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { formatLsn } from '@coffer/engine';

/** The server's state as pg_control records it (pg_controldata's "Database cluster state"). */
export type ClusterState = 'starting up' | 'shut down' | 'shut down in recovery' | 'shutting down' | 'in crash recovery' | 'in archive recovery' | 'in production' | 'unknown';
const STATES: readonly ClusterState[] = ['starting up', 'shut down', 'shut down in recovery', 'shutting down', 'in crash recovery', 'in archive recovery', 'in production'];

export function controlData(dataDir: string): { state: ClusterState; checkpointLsn: string } {
  const b = readFileSync(join(dataDir, 'global', 'pg_control'));
  return { state: STATES[b.readInt32LE(16)] ?? 'unknown', checkpointLsn: formatLsn(b.readBigUInt64LE(32)) };
}
