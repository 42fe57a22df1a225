/**
 * A PostgreSQL connection for callers outside the engine (the agent's WAL
 * watch): libpq's settings and TLS as `connect` reads them, behind a narrow
 * interface, so that no driver types reach the public surface.
 */
import { connect } from './connection.js';

export interface PostgresConnection {
  query<R extends object = Record<string, unknown>>(sql: string, params?: unknown[]): Promise<{ rows: R[] }>;
  end(): Promise<void>;
}

export async function connectPostgres(connectionString?: string, applicationName = 'coffer', password?: string): Promise<PostgresConnection> {
  return (await connect(connectionString, applicationName, password)) as unknown as PostgresConnection;
}
