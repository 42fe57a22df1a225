/** A running cluster's identity as a stanza records it, asked of the server itself. */
import type { StanzaIdentity } from '../format/stanza-record.js';
import { connect, queryOne } from './connection.js';

export async function clusterIdentity(connectionString?: string): Promise<StanzaIdentity> {
  const client = await connect(connectionString, 'coffer stanza');
  try {
    const f = await queryOne<{ sysid: string; version: string; seg: string }>(
      client,
      'server facts',
      `SELECT (SELECT system_identifier::text FROM pg_control_system()) AS sysid, current_setting('server_version_num') AS version,
              (SELECT setting FROM pg_settings WHERE name = 'wal_segment_size') AS seg`,
    );
    return { systemIdentifier: f.sysid, major: Math.floor(Number(f.version) / 10000), walSegmentSize: Number(f.seg) };
  } finally {
    await client.end().catch(() => undefined);
  }
}
