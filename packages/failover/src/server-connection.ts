/**
 * One short-lived connection to a PostgreSQL server, closed whatever the
 * work does. Probes, the guard's look at its own server, promotion and
 * CHECKPOINT all connect this way; they differ only in how long they wait.
 */
import { postgresClientSettings } from '@coffer/engine';
import pg from 'pg';
import type { ServerConnection } from './server-target.js';

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
