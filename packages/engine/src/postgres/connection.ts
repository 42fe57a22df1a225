/** Connecting to PostgreSQL with the libpq environment (PGHOST, PGPORT, PGUSER, PGDATABASE, PGPASSWORD) or a connection string. */
import type pg from 'pg';
import { PostgresError } from '../errors.js';

export type PgClient = pg.Client;

export async function connect(connectionString?: string, applicationName = 'coffer'): Promise<pg.Client> {
  // Loaded here, not at import: WAL archiving and restores (one process per WAL file) never talk to the server.
  const { default: driver } = await import('pg');
  const client = new driver.Client({ ...(connectionString ? { connectionString } : {}), application_name: applicationName });
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
