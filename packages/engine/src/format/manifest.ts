/**
 * A backup manifest: what was backed up, from where, when, and the file tree
 * down to chunk ids. Stored zstd-compressed and sealed (encoding below), under
 * `backups/<label>-<sha256>`. A backup exists once its manifest exists.
 */

import { ID_BYTES } from './chunk-codec.js';

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
  /**
   * Regular files (format 2): a hard link to the earlier file entry at this
   * path, whose content it shares; it lists no chunks of its own.
   */
  linkTo?: string;
  /** Files and directories (format 2): extended attributes (POSIX ACLs among them, as `system.posix_acl_*`), name → base64 value. */
  xattrs?: Record<string, string>;
  /**
   * Regular files: blocks the source's read check found damaged when this
   * backup read them (PostgreSQL: relation block numbers whose page checksum
   * failed twice), stored as read. Absent when none were.
   */
  damagedBlocks?: number[];
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
  /** Of the new chunks, the relation pages stored as deltas against their previous versions (format 3). */
  deltaPages?: number;
  /** Bytes this backup added to the store (packs, indexes; the manifest excluded). */
  storedBytes: number;
  /** Entries the source held but a backup cannot represent (sockets, devices…), or that vanished while read. */
  skipped: string[];
  /** Files that kept changing while they were read (files backups; each read again a few times first): stored as last read, perhaps torn. */
  changed?: string[];
  /** Files with damaged blocks (their entries list them), and how many blocks in all: the backup completed with warnings. */
  damaged?: string[];
  damagedBlocks?: number;
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
  /**
   * Whether the WAL from start to stop LSN was confirmed in this repository
   * before the manifest was written (format 2). `false`: taken with
   * `--no-archive-check`; it needs WAL from elsewhere to be restorable.
   */
  archiveChecked?: boolean;
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
  /** PostgreSQL backups (format 2): the stanza of the cluster backed up. */
  stanza?: string;
  postgres?: PostgresBackupInfo;
  /** The audit record that tells of this backup (`format/audit-record.ts`): a trail cut short before it shows. */
  audit?: AuditAnchor;
}

/** Which audit record a manifest is told of by. */
export interface AuditAnchor {
  chain: string;
  seq: number;
}

/** What the catalogue keeps of a PostgreSQL backup: all but the text files pg_backup_stop returned. */
export type PostgresBackupSummary = Omit<PostgresBackupInfo, 'backupLabel' | 'tablespaceMap'>;

/** What `list`, choosing a backup and retention see of a backup without its tree (the catalogue's summary). */
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
  /** Store key of the backup this one compared against, if any. */
  parent?: string;
  stanza?: string;
  postgres?: PostgresBackupSummary;
  audit?: AuditAnchor;
}

/**
 * Manifest encoding (the bytes that are compressed and sealed): the magic
 * `CMF2`, the JSON length (u32 BE), the JSON with each file's chunk list
 * replaced by its length (`chunkCount`), then every file's chunk ids as raw
 * 32-byte values, file after file. A backup of pages lists one id per 8 KiB
 * page: as JSON text those ids cost more to parse, and to hold as strings,
 * than the rest of the restore plan together. Manifests written as plain JSON
 * (format 1 before this encoding; they start with `{`) are still read.
 */
const MANIFEST_MAGIC = Buffer.from('CMF2');

/** Raw chunk ids of entries read from an encoded manifest, for readers that need no hex. */
const idBytesOf = new WeakMap<TreeEntry, Buffer>();

/** The entry's chunk ids as consecutive 32-byte values, when it was read from an encoded manifest and its list not replaced since. */
export function chunkIdBytes(e: TreeEntry): Buffer | undefined {
  return Object.getOwnPropertyDescriptor(e, 'chunks')?.get ? idBytesOf.get(e) : undefined;
}

/** The entry's chunk ids as consecutive 32-byte values, however it holds them; throws naming the entry when a listed id is not one. */
export function chunkIdsOf(e: TreeEntry): Buffer {
  const bytes = chunkIdBytes(e);
  if (bytes) return bytes;
  const list = e.chunks ?? [];
  const out = Buffer.allocUnsafe(list.length * ID_BYTES);
  list.forEach((hex, i) => {
    if (typeof hex !== 'string' || hex.length !== ID_BYTES * 2 || out.write(hex, i * ID_BYTES, 'hex') !== ID_BYTES) {
      throw new RangeError(`entry ${JSON.stringify(e.path)} lists ${JSON.stringify(String(hex).slice(0, 80))}, which is not a chunk id`);
    }
  });
  return out;
}

function setChunks(e: TreeEntry, chunks: string[] | undefined): void {
  Object.defineProperty(e, 'chunks', { value: chunks, writable: true, enumerable: true, configurable: true });
}

/** Gives the entry its chunk ids as consecutive 32-byte values; `e.chunks` turns them into hex strings only when someone reads it. */
export function setChunkIdBytes(e: TreeEntry, ids: Buffer): void {
  if (ids.length % ID_BYTES !== 0) throw new RangeError(`chunk ids of ${JSON.stringify(e.path)}: ${ids.length} bytes is not a whole number of ids`);
  idBytesOf.set(e, ids);
  Object.defineProperty(e, 'chunks', {
    enumerable: true,
    configurable: true,
    get(): string[] {
      const list: string[] = new Array<string>(ids.length / ID_BYTES);
      for (let i = 0; i < list.length; i++) list[i] = ids.toString('hex', i * ID_BYTES, (i + 1) * ID_BYTES);
      setChunks(e, list);
      return list;
    },
    set(v: string[] | undefined) {
      setChunks(e, v);
    },
  });
}

export function encodeManifest(m: BackupManifest): Buffer {
  const lists: Buffer[] = [];
  const entries = m.entries.map((e) => {
    // Copied key by key: a spread would turn a lazily read chunk list into strings.
    const rest: Record<string, unknown> = {};
    for (const k of Object.keys(e)) if (k !== 'chunks') rest[k] = e[k as keyof TreeEntry];
    if (chunkIdBytes(e) === undefined && e.chunks === undefined) return rest;
    const ids = chunkIdsOf(e);
    lists.push(ids);
    return { ...rest, chunkCount: ids.length / ID_BYTES };
  });
  const json = Buffer.from(JSON.stringify({ ...m, entries }));
  const head = Buffer.allocUnsafe(8);
  MANIFEST_MAGIC.copy(head, 0);
  head.writeUInt32BE(json.length, 4);
  return Buffer.concat([head, json, ...lists]);
}

/**
 * The chunk ids an encoded manifest lists, back to back, without decoding its
 * tree (garbage collection needs no more: every id there belongs to a file
 * entry); undefined for a plain JSON manifest, which must be decoded.
 */
export function manifestIdRegion(plain: Buffer): Buffer | undefined {
  if (plain[0] === 0x7b) return undefined;
  if (plain.length < 8 || !plain.subarray(0, 4).equals(MANIFEST_MAGIC)) throw new RangeError('unknown manifest encoding');
  const start = 8 + plain.readUInt32BE(4);
  if (start > plain.length || (plain.length - start) % ID_BYTES !== 0) throw new RangeError('manifest chunk ids do not fill whole ids');
  return plain.subarray(start);
}

/** Decodes `encodeManifest`'s bytes (or a plain JSON manifest); throws on bytes that are neither. */
export function decodeManifest(plain: Buffer): BackupManifest {
  if (plain[0] === 0x7b) return JSON.parse(plain.toString('utf8')) as BackupManifest;
  if (plain.length < 8 || !plain.subarray(0, 4).equals(MANIFEST_MAGIC)) throw new RangeError('unknown manifest encoding');
  const jsonEnd = 8 + plain.readUInt32BE(4);
  if (jsonEnd > plain.length) throw new RangeError('manifest JSON runs past the end');
  const m = JSON.parse(plain.toString('utf8', 8, jsonEnd)) as BackupManifest;
  if (!Array.isArray(m.entries)) throw new RangeError('manifest has no entry list');
  let o = jsonEnd;
  for (const e of m.entries as (TreeEntry & { chunkCount?: unknown })[]) {
    if (e.chunkCount === undefined) continue;
    const n = e.chunkCount;
    delete e.chunkCount;
    if (typeof n !== 'number' || !Number.isInteger(n) || n < 0 || o + n * ID_BYTES > plain.length) throw new RangeError(`entry ${JSON.stringify(e.path)}: its chunk list runs past the end`);
    setChunkIdBytes(e, plain.subarray(o, o + n * ID_BYTES));
    o += n * ID_BYTES;
  }
  if (o !== plain.length) throw new RangeError(`${plain.length - o} bytes after the last chunk list`);
  return m;
}
