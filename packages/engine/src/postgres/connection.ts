/** Connecting to PostgreSQL with the libpq environment (PGHOST, PGPORT, PGUSER, PGDATABASE, PGPASSWORD) or a connection string. */
import type pg from 'pg';
import { InvalidArgumentError, PostgresError } from '../errors.js';

export type PgClient = pg.Client;

/** libpq keywords Coffer passes on, and the name node-postgres gives each. */
const KEYWORDS: Record<string, string> = {
  host: 'host',
  hostaddr: 'host',
  port: 'port',
  dbname: 'database',
  user: 'user',
  password: 'password',
  application_name: 'application_name',
  options: 'options',
  connect_timeout: 'connectionTimeoutMillis',
  sslmode: 'sslmode',
};

/**
 * A libpq keyword/value connection string (`host=/run/postgresql port=5432
 * dbname=app`), as libpq parses it: whitespace between pairs, optional
 * spaces around `=`, values in single quotes with backslash escapes.
 */
export function parseKeywordValue(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  let i = 0;
  const skip = () => {
    while (i < text.length && /\s/.test(text[i]!)) i++;
  };
  for (skip(); i < text.length; skip()) {
    const key = /^[A-Za-z_][A-Za-z0-9_]*/.exec(text.slice(i))?.[0];
    if (!key) throw new InvalidArgumentError('--db', `expected a keyword at ${JSON.stringify(text.slice(i, i + 20))}`);
    i += key.length;
    skip();
    if (text[i] !== '=') throw new InvalidArgumentError('--db', `keyword ${key} has no "=" after it`);
    i++;
    skip();
    let value = '';
    if (text[i] === "'") {
      for (i++; ; i++) {
        if (i >= text.length) throw new InvalidArgumentError('--db', `unterminated quoted value for ${key}`);
        if (text[i] === '\\' && i + 1 < text.length) value += text[++i];
        else if (text[i] === "'") break;
        else value += text[i];
      }
      i++;
    } else {
      while (i < text.length && !/\s/.test(text[i]!)) value += text[i] === '\\' && i + 1 < text.length ? text[++i] : text[i], i++;
    }
    if (!(key in KEYWORDS)) throw new InvalidArgumentError('--db', `libpq keyword ${key} is not one Coffer passes on (it takes ${Object.keys(KEYWORDS).join(', ')})`);
    out[key] = value;
  }
  return out;
}

/** node-postgres settings for a URI or a libpq keyword/value string. */
function clientSettings(connectionString: string | undefined): Record<string, unknown> {
  if (!connectionString) return {};
  if (/^postgres(ql)?:\/\//.test(connectionString)) return { connectionString };
  const kv = parseKeywordValue(connectionString);
  const settings: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(kv)) {
    if (k === 'sslmode') settings.ssl = v === 'disable' || v === 'allow' || v === 'prefer' ? false : v === 'require' ? { rejectUnauthorized: false } : {};
    else if (k === 'connect_timeout') settings.connectionTimeoutMillis = Number(v) * 1000;
    else if (k === 'port') settings.port = Number(v);
    else settings[KEYWORDS[k]!] = v;
  }
  return settings;
}

export async function connect(connectionString?: string, applicationName = 'coffer'): Promise<pg.Client> {
  // Loaded here, not at import: WAL archiving and restores (one process per WAL file) never talk to the server.
  const { default: driver } = await import('pg');
  const client = new driver.Client({ application_name: applicationName, ...clientSettings(connectionString) });
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
