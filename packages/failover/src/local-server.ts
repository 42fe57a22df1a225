/** The state of the server a guard watches over, from its pid file and one query. */
import { postmasterPid, processAlive } from '@coffer/engine';
import { withClient } from './server-connection.js';

export type LocalServer = { running: false } | { running: true; inRecovery: boolean | undefined };

export async function localServer(dataDir: string, conninfo: string, password?: string, timeoutMs = 2000): Promise<LocalServer> {
  const pid = postmasterPid(dataDir);
  if (pid === undefined || !processAlive(pid)) return { running: false };
  try {
    return await withClient({ conninfo, ...(password !== undefined ? { password } : {}), connectTimeoutMs: timeoutMs, queryTimeoutMs: timeoutMs, applicationName: 'coffer-failover-guard' }, async (client) => {
      const [row] = (await client.query<{ r: boolean }>('SELECT pg_is_in_recovery() AS r')).rows;
      return { running: true as const, inRecovery: row!.r };
    });
  } catch {
    // Starting up, shutting down, or refusing connections: running, state unknown.
    return { running: true, inRecovery: undefined };
  }
}

/**
 * Promotes the standby behind `conninfo` and waits until it accepts writes (PostgreSQL waits up to
 * `waitSeconds`). Resolves the WAL position it had replayed to when promoted (undefined when it was a primary already).
 */
export async function promoteServer(conninfo: string, password?: string, waitSeconds = 60): Promise<string | undefined> {
  // No query timeout: pg_promote waits up to waitSeconds itself.
  return withClient({ conninfo, ...(password !== undefined ? { password } : {}), connectTimeoutMs: 5000, applicationName: 'coffer-failover-guard' }, async (client) => {
    const [row] = (await client.query<{ r: boolean; lsn: string | null }>('SELECT pg_is_in_recovery() AS r, pg_last_wal_replay_lsn()::text AS lsn')).rows;
    if (!row!.r) return undefined;
    const [done] = (await client.query<{ ok: boolean }>('SELECT pg_promote(true, $1) AS ok', [waitSeconds])).rows;
    if (!done!.ok) throw new Error(`the server did not finish promotion within ${waitSeconds} s`);
    return row!.lsn ?? undefined;
  });
}
