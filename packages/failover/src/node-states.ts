/**
 * Each node as one look sees it — for `coffer failover status`: primary or
 * standby, its timeline and WAL position, whether it streams, and how far a
 * standby is behind the primary (received and replayed, in bytes). A node
 * that does not answer says why.
 */
import { lsnBytes } from './lsn.js';
import { probeConnection, type ProbeTarget } from './health-probe.js';
import { withClient } from './server-connection.js';

export interface NodeState {
  node: string;
  ok: boolean;
  error?: string;
  role?: 'primary' | 'standby';
  timeline?: number;
  /** A primary's current WAL position; a standby's replayed one. */
  lsn?: string;
  receivedLsn?: string;
  streaming?: boolean;
  /** Bytes of the primary's WAL a standby has not received / not replayed (as of this look). */
  receiveLagBytes?: number;
  replayLagBytes?: number;
}

export async function nodeStates(nodes: readonly ({ name: string } & ProbeTarget)[]): Promise<NodeState[]> {
  const looks = await Promise.all(
    nodes.map(async (n): Promise<NodeState> => {
      try {
        return await withClient(probeConnection(n), async (client) => {
          const [row] = (
            await client.query<{ r: boolean; lsn: string | null; received: string | null; streaming: boolean; tli: number | null }>(
              `SELECT pg_is_in_recovery() AS r,
                      CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END::text AS lsn,
                      pg_last_wal_receive_lsn()::text AS received,
                      EXISTS (SELECT 1 FROM pg_stat_wal_receiver WHERE status = 'streaming') AS streaming,
                      COALESCE((SELECT received_tli FROM pg_stat_wal_receiver), (SELECT timeline_id FROM pg_control_checkpoint())) AS tli`,
            )
          ).rows;
          return {
            node: n.name,
            ok: true,
            role: row!.r ? ('standby' as const) : ('primary' as const),
            ...(row!.tli !== null ? { timeline: row!.tli } : {}),
            ...(row!.lsn ? { lsn: row!.lsn } : {}),
            ...(row!.r && row!.received ? { receivedLsn: row!.received } : {}),
            ...(row!.r ? { streaming: row!.streaming } : {}),
          };
        });
      } catch (e) {
        return { node: n.name, ok: false, error: (e as Error).message || String(e) };
      }
    }),
  );
  // Behind the primary that answered (one; with two, neither is a reference).
  const primaries = looks.filter((l) => l.role === 'primary' && l.lsn);
  const head = primaries.length === 1 ? lsnBytes(primaries[0]!.lsn!) : undefined;
  return looks.map((l) =>
    l.role === 'standby' && head !== undefined
      ? { ...l, ...(l.receivedLsn ? { receiveLagBytes: Math.max(0, head - lsnBytes(l.receivedLsn)) } : {}), ...(l.lsn ? { replayLagBytes: Math.max(0, head - lsnBytes(l.lsn)) } : {}) }
      : l,
  );
}
