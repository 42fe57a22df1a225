/**
 * Where a standby streams from. After a failover the surviving standbys
 * still name the old primary in `primary_conninfo`; each one's guard points
 * it at the new primary (ALTER SYSTEM and a reload: PostgreSQL 13 and later
 * restart the WAL receiver on the new setting, and with
 * `recovery_target_timeline = latest`, the default, it follows the new
 * timeline). A stopped server (an old primary being rejoined) gets the same
 * line in postgresql.auto.conf, where pg_rewind and pg_basebackup put it.
 *
 * A line Coffer writes names the primary's host, port, user, TLS and other
 * libpq settings and the standby's own `application_name` (its node name, so
 * `synchronous_standby_names` can name it); never a password or a database.
 * Repointing a running standby changes only where it connects. The walreceiver's password comes from
 * the server's ~/.pgpass or `passfile`, provisioned by the operator: Coffer
 * writes no secret into a data directory.
 */
import { closeSync, fsyncSync, openSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { conninfoSettings, keywordValueString } from '@coffer/engine';
import { markStandby } from './fence.js';
import { withClient } from './server-connection.js';
import type { ServerConnection } from './server-target.js';

/** Never carried into `primary_conninfo`: secrets, and what the walreceiver sets itself or the standby names. */
const DROPPED = new Set(['password', 'dbname', 'replication', 'application_name', 'fallback_application_name']);
/** Where a connection goes; the rest (user, TLS, passfile, keepalives…) is how. */
const TARGET = ['host', 'hostaddr', 'port'] as const;

/**
 * `primary_conninfo` for a standby of the node reached by `source` (a URI or
 * keyword/value string): its settings without password or database, and
 * `application_name` set to the standby's node name.
 */
export function standbyConninfo(source: string, applicationName: string): string {
  const kept = Object.entries(conninfoSettings(source, 'replication')).filter(([k]) => !DROPPED.has(k));
  return keywordValueString({ ...Object.fromEntries(kept), application_name: applicationName });
}

/**
 * A standby's `primary_conninfo` turned to another primary: host, hostaddr
 * and port from `source`, everything else (user, TLS, passfile, its
 * application_name) as the standby had it — an operator's settings stay.
 * Undefined when it points there already. A standby with no setting, or one
 * that cannot be read, gets `standbyConninfo` whole.
 */
export function repointedConninfo(current: string, source: string, applicationName: string): string | undefined {
  let mine: Record<string, string>;
  try {
    mine = current.trim() ? conninfoSettings(current, 'primary_conninfo') : {};
  } catch {
    mine = {};
  }
  if (Object.keys(mine).length === 0) return standbyConninfo(source, applicationName);
  const target = conninfoSettings(source, 'replication');
  if (TARGET.every((k) => mine[k] === target[k])) return undefined;
  const out: Record<string, string> = { ...mine };
  for (const k of TARGET) {
    if (target[k] === undefined) delete out[k];
    else out[k] = target[k];
  }
  out.application_name ??= applicationName;
  return keywordValueString(out);
}

/** A setting's value as a PostgreSQL configuration file or SQL string literal holds it. */
function literal(v: string): string {
  return `'${v.replace(/'/g, "''")}'`;
}

/**
 * Points the running standby behind `local` at the node `source` reaches
 * (see `repointedConninfo`) and reloads it; resolves whether anything changed.
 * Needs a superuser, or `GRANT ALTER SYSTEM ON PARAMETER primary_conninfo`.
 */
export async function followPrimary(local: ServerConnection, source: string, applicationName: string): Promise<boolean> {
  return withClient(local, async (client) => {
    const [row] = (await client.query<{ primary_conninfo: string }>('SHOW primary_conninfo')).rows;
    const wanted = repointedConninfo(row!.primary_conninfo, source, applicationName);
    if (wanted === undefined) return false;
    // ALTER SYSTEM takes no parameters: the value goes in as a literal.
    await client.query(`ALTER SYSTEM SET primary_conninfo = ${literal(wanted)}`);
    await client.query('SELECT pg_reload_conf()');
    return true;
  });
}

/**
 * Makes a stopped server a standby of `primaryConninfo`: its
 * `primary_conninfo` appended to postgresql.auto.conf (the last line of a
 * setting wins) and `standby.signal`, both synced.
 */
export function writeStandbyConfig(dataDir: string, primaryConninfo: string): void {
  const fd = openSync(join(dataDir, 'postgresql.auto.conf'), 'a', 0o600);
  try {
    writeSync(fd, `primary_conninfo = ${literal(primaryConninfo)}\n`);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  markStandby(dataDir);
}
