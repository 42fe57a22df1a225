/**
 * Health probes. The primary's is a write: a transaction that takes a
 * transaction id and commits, with `synchronous_commit = local` so a lost
 * synchronous standby (or Coffer's own receiver listed as one) does not make
 * a healthy primary look dead, and a `statement_timeout` so a hung server
 * counts as a miss instead of holding the probe. A standby's reads its
 * replication state: in recovery, what it received and replayed, and
 * whether its WAL receiver is streaming.
 */
import { withClient } from './server-connection.js';
import type { ServerConnection } from './server-target.js';

export interface ProbeTarget {
  /** A libpq-style connection URI, e.g. postgresql://coffer@db1:5432/postgres (the password from PGPASSWORD or ~/.pgpass, never the URI in logs). */
  conninfo: string;
  /** The role's password, when the server asks for one and no ~/.pgpass has it (read from where the policy says; never logged). */
  password?: string;
  /** Gives up on connecting or on the statement after this many ms (default 2 s). */
  timeoutMs?: number;
}

export type ProbeResult = { ok: true; ms: number; inRecovery: boolean; lsn: string; timeline: number } | { ok: false; ms: number; error: string };

export interface StandbyState {
  inRecovery: boolean;
  /** Received (flushed) by its WAL receiver; undefined when it never streamed. */
  receivedLsn: string | undefined;
  replayedLsn: string | undefined;
  streaming: boolean;
  timeline: number;
  /** The timeline its WAL receiver streams (undefined when none runs). */
  receivedTimeline: number | undefined;
  /** Where a server not in recovery (a primary) writes now. */
  currentLsn: string | undefined;
}

/** How a probe connects: the target's timeout for connecting, and half a second more for each statement. */
function probeConnection(target: ProbeTarget): ServerConnection {
  const timeoutMs = target.timeoutMs ?? 2000;
  return { conninfo: target.conninfo, ...(target.password !== undefined ? { password: target.password } : {}), connectTimeoutMs: timeoutMs, queryTimeoutMs: timeoutMs + 500, applicationName: 'coffer-failover' };
}

/** One write probe of the node that should be primary. */
export async function probePrimary(target: ProbeTarget): Promise<ProbeResult> {
  const started = performance.now();
  const timeoutMs = target.timeoutMs ?? 2000;
  try {
    return await withClient(probeConnection(target), async (client) => {
      await client.query('BEGIN');
      await client.query('SET LOCAL synchronous_commit = local');
      await client.query(`SET LOCAL statement_timeout = ${Math.max(1, Math.floor(timeoutMs))}`);
      const [row] = (await client.query<{ r: boolean; tli: number }>('SELECT pg_is_in_recovery() AS r, (SELECT timeline_id FROM pg_control_checkpoint()) AS tli')).rows;
      if (row!.r) {
        await client.query('ROLLBACK');
        return { ok: false as const, ms: performance.now() - started, error: 'in recovery: a standby, not a primary' };
      }
      // Taking a transaction id makes the commit write (and flush) WAL: a server that cannot write fails here.
      await client.query('SELECT pg_current_xact_id()');
      await client.query('COMMIT');
      const [after] = (await client.query<{ lsn: string }>('SELECT pg_current_wal_lsn()::text AS lsn')).rows;
      return { ok: true as const, ms: performance.now() - started, inRecovery: false, lsn: after!.lsn, timeline: row!.tli };
    });
  } catch (e) {
    return { ok: false, ms: performance.now() - started, error: (e as Error).message || String(e) };
  }
}

/** Reads a server's replication state (a standby's, or a primary's position); throws when it cannot be reached. */
export async function standbyState(target: ProbeTarget): Promise<StandbyState> {
  return withClient(probeConnection(target), async (client) => {
    const [row] = (
      await client.query<{ r: boolean; received: string | null; replayed: string | null; streaming: boolean; tli: number; rtli: number | null; cur: string | null }>(
        `SELECT pg_is_in_recovery() AS r, pg_last_wal_receive_lsn()::text AS received, pg_last_wal_replay_lsn()::text AS replayed,
                CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_wal_lsn()::text END AS cur,
                EXISTS (SELECT 1 FROM pg_stat_wal_receiver WHERE status = 'streaming') AS streaming,
                (SELECT received_tli FROM pg_stat_wal_receiver) AS rtli,
                (SELECT timeline_id FROM pg_control_checkpoint()) AS tli`,
      )
    ).rows;
    return { inRecovery: row!.r, receivedLsn: row!.received ?? undefined, replayedLsn: row!.replayed ?? undefined, streaming: row!.streaming, timeline: row!.tli, receivedTimeline: row!.rtli ?? undefined, currentLsn: row!.cur ?? undefined };
  });
}
