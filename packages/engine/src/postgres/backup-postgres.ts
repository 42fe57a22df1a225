/**
 * A PostgreSQL base backup, read straight from the data directory between
 * non-exclusive `pg_backup_start` and `pg_backup_stop` on one held connection
 * (closing it would abort the backup). Works on a primary or a standby.
 * With data checksums on, every page older than the start LSN is verified as
 * it is read. Files follow the layout rules in `layout.ts`; WAL comes from the
 * archive (`wal-push`) at restore.
 */
import { access, realpath } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { InvalidArgumentError, PostgresError } from '../errors.js';
import type { BackupManifest, PostgresBackupInfo, TreeEntry } from '../format/manifest.js';
import type { Repository } from '../repository/repository.js';
import { backupTree, type BackupFilesOptions, type BackupResult } from '../backup/backup-files.js';
import { connect, queryOne } from './connection.js';
import { backupWalFiles, parseLsn, pgdataDecision, relationFirstBlock } from './layout.js';

export interface PostgresBackupOptions extends BackupFilesOptions {
  /** libpq connection string; default: the PG* environment variables. */
  connectionString?: string;
  /** Data directory as seen by this process; default: the server's `data_directory`. */
  pgdata?: string;
}

interface ServerFacts {
  version_num: string;
  version: string;
  data_directory: string | null;
  data_checksums: string;
  in_recovery: boolean;
  system_identifier: string;
  wal_segment_size: string;
  block_size: string;
  segment_size: string;
}

export async function backupPostgres(repo: Repository, options: PostgresBackupOptions = {}): Promise<BackupResult> {
  const client = await connect(options.connectionString, 'coffer backup');
  try {
    const facts = await queryOne<ServerFacts>(
      client,
      'server facts',
      `SELECT current_setting('server_version_num') AS version_num, version() AS version,
              current_setting('data_directory', true) AS data_directory, current_setting('data_checksums') AS data_checksums,
              pg_is_in_recovery() AS in_recovery, (SELECT system_identifier::text FROM pg_control_system()) AS system_identifier,
              (SELECT setting FROM pg_settings WHERE name = 'wal_segment_size') AS wal_segment_size,
              current_setting('block_size') AS block_size,
              (SELECT setting FROM pg_settings WHERE name = 'segment_size') AS segment_size`,
    );
    const versionNum = Number(facts.version_num);
    if (versionNum < 130000) throw new PostgresError('version check', `server version ${versionNum} is older than 13, which Coffer does not support`);
    if (Number(facts.block_size) !== 8192) throw new PostgresError('version check', `block_size ${facts.block_size} is not 8192`);
    const pgdataGiven = options.pgdata ?? facts.data_directory;
    if (!pgdataGiven) throw new InvalidArgumentError('pgdata', 'the server does not reveal data_directory to this role; pass --pgdata');
    const pgdata = await realpath(resolve(pgdataGiven)).catch(() => {
      throw new InvalidArgumentError('pgdata', `${pgdataGiven} does not exist here`);
    });
    // pg_settings gives segment_size in blocks and wal_segment_size in bytes.
    const relsegBlocks = Number(facts.segment_size);
    if (!Number.isInteger(relsegBlocks) || relsegBlocks <= 0) throw new PostgresError('server facts', `unexpected segment_size ${facts.segment_size}`);
    const tablespaces = (
      await client.query<{ oid: string; name: string; location: string }>(
        `SELECT oid::text AS oid, spcname AS name, pg_tablespace_location(oid) AS location FROM pg_tablespace WHERE spcname NOT IN ('pg_default', 'pg_global')`,
      )
    ).rows.filter((t) => t.location && !t.location.startsWith('pg_tblspc/'));

    const label = `coffer ${new Date().toISOString()}`;
    const startSql = versionNum >= 150000 ? 'SELECT pg_backup_start($1, true)::text AS lsn, clock_timestamp() AS at' : 'SELECT pg_start_backup($1, true, false)::text AS lsn, clock_timestamp() AS at';
    const start = await queryOne<{ lsn: string; at: Date }>(client, 'pg_backup_start', startSql, [label]);
    const startLsn = parseLsn(start.lsn);
    const checksums = facts.data_checksums === 'on';

    const mounts = new Map(tablespaces.map((t) => [`pg_tblspc/${t.oid}`, t.location]));
    const verify = (e: TreeEntry) => {
      if (!checksums) return undefined;
      const firstBlock = relationFirstBlock(e.path, relsegBlocks);
      return firstBlock === undefined ? undefined : { label: e.path, firstBlock, startLsn };
    };
    const finish = async (): Promise<Pick<BackupManifest, 'postgres'>> => {
      const stopSql =
        versionNum >= 150000
          ? 'SELECT lsn::text AS lsn, labelfile, spcmapfile, clock_timestamp() AS at FROM pg_backup_stop(false)'
          : 'SELECT lsn::text AS lsn, labelfile, spcmapfile, clock_timestamp() AS at FROM pg_stop_backup(false, false)';
      const stop = await queryOne<{ lsn: string; labelfile: string; spcmapfile: string | null; at: Date }>(client, 'pg_backup_stop', stopSql);
      const next = await queryOne<{ xid: string }>(client, 'xid horizon', 'SELECT pg_snapshot_xmax(pg_current_snapshot())::text AS xid');
      const timeline = Number(/START TIMELINE: (\d+)/.exec(stop.labelfile)?.[1] ?? NaN);
      if (!Number.isInteger(timeline)) throw new PostgresError('pg_backup_stop', 'backup_label has no START TIMELINE');
      // The wait pg_backup_stop(true) would do, but looking every few milliseconds instead of every second.
      const { mode } = await queryOne<{ mode: string }>(client, 'archive mode', `SELECT current_setting('archive_mode') AS mode`);
      if (mode === 'always' || (mode === 'on' && !facts.in_recovery)) {
        await waitArchived(pgdata, backupWalFiles(timeline, startLsn, parseLsn(stop.lsn), Number(facts.wal_segment_size)));
      }
      const info: PostgresBackupInfo = {
        versionNum,
        version: facts.version,
        systemIdentifier: facts.system_identifier,
        timeline,
        startLsn: start.lsn,
        stopLsn: stop.lsn,
        stopNextXid: next.xid,
        startTime: start.at.toISOString(),
        stopTime: stop.at.toISOString(),
        standby: facts.in_recovery,
        dataChecksums: checksums,
        walSegmentSize: Number(facts.wal_segment_size),
        dataDirectory: pgdata,
        backupLabel: stop.labelfile,
        tablespaceMap: stop.spcmapfile ?? '',
        tablespaces,
      };
      return { postgres: info };
    };
    return await backupTree(
      repo,
      {
        kind: 'postgres',
        root: pgdata,
        walk: { decide: pgdataDecision, mounts },
        verify,
        isRelation: (e) => relationFirstBlock(e.path, relsegBlocks) !== undefined,
        isParent: (m) => m.kind === 'postgres' && m.postgres?.systemIdentifier === facts.system_identifier,
        finish,
      },
      options,
    );
  } finally {
    // Ending the session aborts a backup still in progress, as PostgreSQL documents.
    await client.end().catch(() => undefined);
  }
}

/**
 * Waits until PostgreSQL's archiver has archived `files`, judged as the
 * server judges it (XLogArchiveIsBusy): a `.done` status file, or neither a
 * `.ready` one nor the file itself (archived and already recycled).
 */
async function waitArchived(pgdata: string, files: string[]): Promise<void> {
  const exists = (p: string) => access(p).then(() => true, () => false);
  const status = join(pgdata, 'pg_wal', 'archive_status');
  const busy = async (f: string) => {
    if (await exists(join(status, `${f}.done`))) return false;
    if (await exists(join(status, `${f}.ready`))) return true;
    if (await exists(join(status, `${f}.done`))) return false;
    return exists(join(pgdata, 'pg_wal', f));
  };
  // Archiving a segment takes tens of milliseconds to seconds: look often, the check costs three stats.
  for (let pause = 5; ; pause = Math.min(pause * 2, 100)) {
    if (!(await Promise.all(files.map(busy))).some(Boolean)) return;
    await new Promise((r) => setTimeout(r, pause));
  }
}
