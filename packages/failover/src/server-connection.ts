/**
 * One short-lived connection to a PostgreSQL server, closed whatever the
 * work does. Probes, the guard's look at its own server, promotion and
 * CHECKPOINT all connect this way; they differ only in how long they wait.
 */
import { postgresClientSettings } from '@coffer/engine';
import pg from 'pg';

export interface ServerConnection {
  /** A connection URI or libpq keyword/value string (the password never in it when logged). */
  conninfo: string;
  /** The role's password, when no ~/.pgpass has it (never logged). */
  password?: string;
  /** Gives up on connecting after this many ms. */
  connectTimeoutMs: number;
  /**
   * Gives up on each query after this many ms. Left out for work that takes
   * as long as it takes and has its own limit (promotion, CHECKPOINT).
   */
  queryTimeoutMs?: number;
  /** Shown in pg_stat_activity. */
  applicationName: string;
}

export async function withClient<T>(server: ServerConnection, work: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({
    ...postgresClientSettings(server.conninfo),
    ...(server.password !== undefined ? { password: server.password } : {}),
    connectionTimeoutMillis: server.connectTimeoutMs,
    ...(server.queryTimeoutMs !== undefined ? { query_timeout: server.queryTimeoutMs } : {}),
    application_name: server.applicationName,
  });
  // A connection that drops mid-work reports through the query; an unhandled 'error' would crash the process.
  client.on('error', () => undefined);
  try {
    await client.connect();
    return await work(client);
  } finally {
    await client.end().catch(() => undefined);
  }
}
