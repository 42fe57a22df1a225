/**
 * A backup manifest: what was backed up, from where, when, and the file tree
 * down to chunk ids. Stored as JSON, zstd-compressed and sealed, under
 * `backups/<label>-<sha256>`. A backup exists once its manifest exists.
 */

export type EntryType = 'file' | 'dir' | 'symlink';

export interface TreeEntry {
  /** Path relative to the backup root, `/`-separated; `.` is the root itself. */
  path: string;
  type: EntryType;
  /** Permission bits, including setuid/setgid/sticky (`mode & 0o7777`). */
  mode: number;
  uid: number;
  gid: number;
  /** Modification time in nanoseconds since the epoch, as a decimal string. */
  mtimeNs: string;
  /** Regular files: size in bytes and chunk ids (hex) in order. */
  size?: number;
  chunks?: string[];
  /** Regular files: `fixed` when cut by the config's `relationChunker`; absent means FastCDC with the config's `chunker`. */
  chunking?: 'fixed';
  /** Symlinks: the link's target, verbatim. Directories: the original location of a tablespace read through its link. */
  target?: string;
  /** Regular files: change detection against the next backup's source. */
  ino?: number;
  ctimeNs?: string;
}

export interface BackupStats {
  files: number;
  dirs: number;
  symlinks: number;
  /** Bytes of regular file content in the backup. */
  bytes: number;
  /** Files whose chunk list came from the parent backup without reading them. */
  unchangedFiles: number;
  /** Chunks and bytes this backup added to the repository. */
  newChunks: number;
  newBytes: number;
  /** Bytes this backup added to the store (packs, indexes; the manifest excluded). */
  storedBytes: number;
  /** Entries the source held but a backup cannot represent (sockets, devices…), or that vanished while read. */
  skipped: string[];
}

/** What a PostgreSQL base backup records about the server and the backup. */
export interface PostgresBackupInfo {
  /** `server_version_num`, e.g. 150018. */
  versionNum: number;
  version: string;
  systemIdentifier: string;
  /** Timeline the backup started on. */
  timeline: number;
  /** Start and stop LSNs, as `X/Y`. */
  startLsn: string;
  stopLsn: string;
  /** First transaction id not yet assigned when the backup stopped (xid8, decimal). */
  stopNextXid: string;
  /** Server clock at start and stop. */
  startTime: string;
  stopTime: string;
  /** Taken on a standby. */
  standby: boolean;
  dataChecksums: boolean;
  walSegmentSize: number;
  dataDirectory: string;
  /** Contents returned by pg_backup_stop, written back at restore. */
  backupLabel: string;
  tablespaceMap: string;
  tablespaces: { oid: string; name: string; location: string }[];
}

export interface BackupManifest {
  format: number;
  kind: 'files' | 'postgres';
  label: string;
  startedAt: string;
  finishedAt: string;
  hostname: string;
  /** Absolute path of the backed-up directory. */
  source: string;
  /** Store key of the backup this one compared against, if any. */
  parent?: string;
  tags: string[];
  stats: BackupStats;
  entries: TreeEntry[];
  postgres?: PostgresBackupInfo;
}

/** What `list` shows of a backup without its tree. */
export interface BackupSummary {
  /** Store key of the manifest. */
  key: string;
  /** Short id: the first 12 hex digits of the manifest's SHA-256. */
  id: string;
  kind: BackupManifest['kind'];
  label: string;
  startedAt: string;
  finishedAt: string;
  hostname: string;
  source: string;
  tags: string[];
  stats: BackupStats;
  postgres?: PostgresBackupInfo;
}
