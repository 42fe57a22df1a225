/** The state of the server a guard watches over, from its pid file and one query. */
import { postmasterPid, processAlive } from '@coffer/engine';
import pg from 'pg';

export type LocalServer = { running: false } | { running: true; inRecovery: boolean | undefined };

export async function localServer(dataDir: string, conninfo: string, password?: string, timeoutMs = 2000): Promise<LocalServer> {
  const pid = postmasterPid(dataDir);
  if (pid === undefined || !processAlive(pid)) return { running: false };
  const client = new pg.Client({ connectionString: conninfo, ...(password !== undefined ? { password } : {}), connectionTimeoutMillis: timeoutMs, query_timeout: timeoutMs, application_name: 'coffer-failover-guard' });
  client.on('error', () => undefined);
  try {
    await client.connect();
    const [row] = (await client.query<{ r: boolean }>('SELECT pg_is_in_recovery() AS r')).rows;
    return { running: true, inRecovery: row!.r };
  } catch {
    // Starting up, shutting down, or refusing connections: running, state unknown.
    return { running: true, inRecovery: undefined };
  } finally {
    await client.end().catch(() => undefined);
  }
}

/**
 * Promotes the standby behind `conninfo` and waits until it accepts writes (PostgreSQL waits up to
 * `waitSeconds`). Resolves the WAL position it had replayed to when promoted (undefined when it was a primary already).
 */
export async function promoteServer(conninfo: string, password?: string, waitSeconds = 60): Promise<string | undefined> {
  const client = new pg.Client({ connectionString: conninfo, ...(password !== undefined ? { password } : {}), connectionTimeoutMillis: 5000, application_name: 'coffer-failover-guard' });
  client.on('error', () => undefined);
  try {
    await client.connect();
    const [row] = (await client.query<{ r: boolean; lsn: string | null }>('SELECT pg_is_in_recovery() AS r, pg_last_wal_replay_lsn()::text AS lsn')).rows;
    if (!row!.r) return undefined;
    const [done] = (await client.query<{ ok: boolean }>('SELECT pg_promote(true, $1) AS ok', [waitSeconds])).rows;
    if (!done!.ok) throw new Error(`the server did not finish promotion within ${waitSeconds} s`);
    return row!.lsn ?? undefined;
  } finally {
    await client.end().catch(() => undefined);
  }
}
