/**
 * Connection strings as libpq reads them — a URI or keyword/value pairs,
 * with the environment (PGSSLMODE and the certificate variables) — turned
 * into node-postgres settings, TLS included with libpq's meaning of each
 * `sslmode`: `verify-full` checks the certificate against `sslrootcert` and
 * the server's name against the host; `verify-ca` the certificate only;
 * `require` encrypts without checking, unless a root certificate is given
 * (then as `verify-ca`, as libpq does). No driver types here: the failover
 * package and consumers of the public API read these without `pg`'s.
 */
import { readFileSync } from 'node:fs';
import type { ConnectionOptions } from 'node:tls';
import { InvalidArgumentError } from '../errors.js';

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
  sslrootcert: 'sslrootcert',
  sslcert: 'sslcert',
  sslkey: 'sslkey',
};

const SSL_MODES = ['disable', 'allow', 'prefer', 'require', 'verify-ca', 'verify-full'];

/** node-postgres's `ssl` for libpq's settings (each from the connection string, else its environment variable). */
export function tlsSettings(kv: Record<string, string | undefined>, env: NodeJS.ProcessEnv = process.env): false | ConnectionOptions | undefined {
  const mode = kv.sslmode ?? env.PGSSLMODE;
  const rootcert = kv.sslrootcert ?? env.PGSSLROOTCERT;
  const cert = kv.sslcert ?? env.PGSSLCERT;
  const key = kv.sslkey ?? env.PGSSLKEY;
  if (mode === undefined) return undefined;
  if (!SSL_MODES.includes(mode)) throw new InvalidArgumentError('sslmode', `${JSON.stringify(mode)} is not one of ${SSL_MODES.join(', ')}`);
  // allow and prefer try TLS and fall back to plain; this driver cannot fall back, so they connect plain as libpq would without TLS.
  if (mode === 'disable' || mode === 'allow' || mode === 'prefer') return false;
  const read = (what: string, path: string | undefined) => {
    if (path === undefined) return undefined;
    try {
      return readFileSync(path, 'utf8');
    } catch (e) {
      throw new InvalidArgumentError(what, `${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
  };
  const ca = read('sslrootcert', rootcert);
  const client = { ...(cert !== undefined ? { cert: read('sslcert', cert)! } : {}), ...(key !== undefined ? { key: read('sslkey', key)! } : {}) };
  if (mode === 'require' && ca === undefined) return { rejectUnauthorized: false, ...client };
  // verify-ca (and require with a root certificate): the chain is checked, the name is not.
  if (mode === 'require' || mode === 'verify-ca') return { ...(ca ? { ca } : {}), rejectUnauthorized: true, checkServerIdentity: () => undefined, ...client };
  return { ...(ca ? { ca } : {}), rejectUnauthorized: true, ...client };
}

/**
 * A libpq keyword/value connection string (`host=/run/postgresql port=5432
 * dbname=app`), as libpq parses it: whitespace between pairs, optional
 * spaces around `=`, values in single quotes with backslash escapes.
 * Keywords Coffer does not pass on to its own connections are refused,
 * unless `anyKeyword` (a string handed on to libpq, e.g. `primary_conninfo`);
 * `option` names the setting at fault in errors.
 */
export function parseKeywordValue(text: string, options: { anyKeyword?: boolean; option?: string } = {}): Record<string, string> {
  const option = options.option ?? '--db';
  const out: Record<string, string> = {};
  let i = 0;
  const skip = () => {
    while (i < text.length && /\s/.test(text[i]!)) i++;
  };
  for (skip(); i < text.length; skip()) {
    const key = /^[A-Za-z_][A-Za-z0-9_]*/.exec(text.slice(i))?.[0];
    if (!key) throw new InvalidArgumentError(option, `expected a keyword at ${JSON.stringify(text.slice(i, i + 20))}`);
    i += key.length;
    skip();
    if (text[i] !== '=') throw new InvalidArgumentError(option, `keyword ${key} has no "=" after it`);
    i++;
    skip();
    let value = '';
    if (text[i] === "'") {
      for (i++; ; i++) {
        if (i >= text.length) throw new InvalidArgumentError(option, `unterminated quoted value for ${key}`);
        if (text[i] === '\\' && i + 1 < text.length) value += text[++i];
        else if (text[i] === "'") break;
        else value += text[i];
      }
      i++;
    } else {
      while (i < text.length && !/\s/.test(text[i]!)) value += text[i] === '\\' && i + 1 < text.length ? text[++i] : text[i], i++;
    }
    if (!options.anyKeyword && !(key in KEYWORDS)) throw new InvalidArgumentError(option, `libpq keyword ${key} is not one Coffer passes on (it takes ${Object.keys(KEYWORDS).join(', ')})`);
    out[key] = value;
  }
  return out;
}

/** A URI's or keyword/value string's settings, every libpq keyword kept. */
export function conninfoSettings(source: string, option = '--db'): Record<string, string> {
  if (!/^postgres(ql)?:\/\//.test(source)) return parseKeywordValue(source, { anyKeyword: true, option });
  let url: URL;
  try {
    url = new URL(source);
  } catch {
    throw new InvalidArgumentError(option, 'not a connection URI one host can be read from (a list of hosts is not taken)');
  }
  const out: Record<string, string> = {};
  // An IPv6 literal comes in brackets.
  if (url.hostname) out.host = decodeURIComponent(url.hostname.replace(/^\[(.*)\]$/, '$1'));
  if (url.port) out.port = url.port;
  if (url.username) out.user = decodeURIComponent(url.username);
  if (url.password) out.password = decodeURIComponent(url.password);
  if (url.pathname.length > 1) out.dbname = decodeURIComponent(url.pathname.slice(1));
  for (const [k, v] of url.searchParams) out[k] = v;
  return out;
}

/** libpq's quoting of a value: bare when it can be, else in single quotes with `\` before `'` and `\`. */
function quoteValue(v: string): string {
  return v !== '' && /^[^\s'\\]+$/.test(v) ? v : `'${v.replace(/[\\']/g, (c) => `\\${c}`)}'`;
}

/** Settings written back as a libpq keyword/value string, each value quoted as libpq reads it. */
export function keywordValueString(settings: Record<string, string>): string {
  return Object.entries(settings)
    .map(([k, v]) => `${k}=${quoteValue(v)}`)
    .join(' ');
}

/** node-postgres settings for a URI or a libpq keyword/value string (TLS as libpq's sslmode means it). */
export function clientSettings(connectionString: string | undefined): Record<string, unknown> {
  if (!connectionString) {
    // The environment alone: TLS as libpq reads PGSSLMODE and the certificate variables (the driver's own reading verifies on `require`).
    const ssl = tlsSettings({});
    return ssl === undefined ? {} : { ssl };
  }
  if (/^postgres(ql)?:\/\//.test(connectionString)) return { connectionString };
  const kv = parseKeywordValue(connectionString);
  const settings: Record<string, unknown> = {};
  const ssl = tlsSettings(kv);
  if (ssl !== undefined) settings.ssl = ssl;
  for (const [k, v] of Object.entries(kv)) {
    if (k === 'sslmode' || k === 'sslrootcert' || k === 'sslcert' || k === 'sslkey') continue;
    else if (k === 'connect_timeout') settings.connectionTimeoutMillis = Number(v) * 1000;
    else if (k === 'port') settings.port = Number(v);
    else settings[KEYWORDS[k]!] = v;
  }
  return settings;
}
