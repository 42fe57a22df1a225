/**
 * Connecting to PostgreSQL with the libpq environment (PGHOST, PGPORT,
 * PGUSER, PGDATABASE, PGPASSWORD, PGSSLMODE, PGSSLROOTCERT, PGSSLCERT,
 * PGSSLKEY) or a connection string (read by `connection-string.ts`).
 */
import type pg from 'pg';
import { PostgresError } from '../errors.js';
import { clientSettings } from './connection-string.js';

export type PgClient = pg.Client;

/** `password`: given by the caller (a secret the policy names), over PGPASSWORD and .pgpass. */
export async function connect(connectionString?: string, applicationName = 'coffer', password?: string, options: { replication?: boolean } = {}): Promise<pg.Client> {
  // Loaded here, not at import: WAL archiving and restores (one process per WAL file) never talk to the server.
  const { default: driver } = await import('pg');
  // replication: a physical walsender connection (IDENTIFY_SYSTEM, START_REPLICATION), as a standby's.
  const client = new driver.Client({ application_name: applicationName, ...clientSettings(connectionString), ...(password !== undefined ? { password } : {}), ...(options.replication ? { replication: 'true' } : {}) });
  try {
    await client.connect();
  } catch (e) {
    // The connection string may hold a password: name only where we tried to go.
    const where = `${client.host ?? 'localhost'}:${client.port ?? 5432}`;
    throw new PostgresError('connection', `cannot connect to ${where} as ${client.user ?? 'the current user'}: ${(e as Error).message}`, { cause: e });
  }
  return client;
}

export async function queryOne<T>(client: pg.Client, step: string, sql: string, params: unknown[] = []): Promise<T> {
  try {
    const r = await client.query(sql, params);
    return r.rows[0] as T;
  } catch (e) {
    throw new PostgresError(step, (e as Error).message, { cause: e });
  }
}
