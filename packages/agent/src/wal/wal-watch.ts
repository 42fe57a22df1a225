/**
 * Watching one cluster's WAL: where the server is writing, what the archive
 * holds (pg_stat_archiver: what archive_command — `coffer wal-push`, which
 * answers 0 only once a segment is durable in the repository — has
 * acknowledged), the `.ready` backlog, the size of pg_wal, and each standby's
 * replay lag. From successive looks, the RPO and the archive lag.
 */
import { connectPostgres, formatLsn, parseLsn, segmentName, segmentNumber, walTransactionIds, type PostgresConnection } from '@coffer/engine';
import { RpoTracker, type RpoFigures } from './rpo-tracker.js';

export interface ReplicaStatus {
  /** application_name, else the client address. */
  name: string;
  state: string;
  replayLagSeconds: number;
  replayLagBytes: number;
}

export interface WalStatus {
  cluster: string;
  stanza: string;
  /** The repository's location. */
  repository: string;
  checkedAt: string;
  /** The last look worked (the server answered). */
  ok: boolean;
  error?: string;
  standby?: boolean;
  /** Where the server writes (a standby: where it has received to). */
  lsn?: string;
  /** The end of the newest segment archive_command acknowledged. */
  archivedThrough?: string;
  lastArchivedWal?: string;
  lastArchivedAt?: string;
  rpoSeconds?: number;
  archiveLagSeconds?: number;
  unarchivedBytes?: number;
  readyFiles?: number;
  pgWalBytes?: number;
  archiveFailures?: number;
  lastFailedWal?: string;
  lastFailedAt?: string;
  /** archive_mode is on and an archive command or library is set. */
  archiving?: boolean;
  replicas?: ReplicaStatus[];
  /**
   * Why the WAL past the archived end cannot be read (pg_read_binary_file needs
   * superuser, pg_read_server_files or a grant): the RPO then stays at the time
   * since the last transaction after a segment switch, until the next switch.
   */
  walReadError?: string;
  /** The slot of the cluster's `coffer wal-receive` (when the policy streams its WAL). */
  receiverSlot?: ReceiverSlotStatus;
}

export interface ReceiverSlotStatus {
  name: string;
  exists: boolean;
  /** A receiver is connected to it. */
  active: boolean;
  /** PostgreSQL's word on its WAL: reserved, extended, unreserved, or lost (max_slot_wal_keep_size removed some). */
  walStatus?: string;
  /** WAL the slot holds the server to, in bytes (pg_wal grows by this while no receiver reads). */
  retainedBytes?: number;
  /** Where the receiver reported WAL durable in the repository, while it streams. */
  streamedThrough?: string;
}

interface Position {
  lsn: string | null;
  /** Where the next record goes (a primary's; null on a standby): past `lsn` while records wait to be written. */
  insert_lsn: string | null;
  /** The timeline WAL is written on (a primary's; null on a standby), as a segment name spells it. */
  timeline: string | null;
  /** The oldest transaction id still running (equal to next_xid when none is). */
  oldest_xid: string;
  next_xid: string;
  last_archived_wal: string | null;
  last_archived_time: Date | null;
  segment_bytes: string;
  /** How far the cluster's `coffer wal-receive` reported WAL durable in the repository (null: not streaming). */
  streamed_lsn: string | null;
}

interface Facts {
  standby: boolean;
  failed_count: string;
  last_failed_wal: string | null;
  last_failed_time: Date | null;
  archive_mode: string;
  archive_command: string;
  archive_library: string | null;
  ready: number;
  wal_bytes: string;
}

/** The position, the next transaction id and the archive's end: cheap enough to ask every second. */
const POSITION = `SELECT (CASE WHEN pg_is_in_recovery() THEN pg_last_wal_receive_lsn() ELSE pg_current_wal_lsn() END)::text AS lsn,
  (CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_wal_insert_lsn() END)::text AS insert_lsn,
  (CASE WHEN pg_is_in_recovery() THEN NULL ELSE substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8) END) AS timeline,
  pg_snapshot_xmin(pg_current_snapshot())::text AS oldest_xid,
  pg_snapshot_xmax(pg_current_snapshot())::text AS next_xid,
  a.last_archived_wal, a.last_archived_time,
  (SELECT setting FROM pg_settings WHERE name = 'wal_segment_size') AS segment_bytes,
  (SELECT max(flush_lsn)::text FROM pg_stat_replication WHERE application_name = $1 AND state = 'streaming') AS streamed_lsn
FROM pg_stat_archiver a`;

/** The receiver's slot: how much WAL it holds the server to (a receiver gone keeps it growing), and whether it is still whole. */
const SLOT = `SELECT active, wal_status,
  (CASE WHEN restart_lsn IS NULL THEN NULL
        ELSE pg_wal_lsn_diff(CASE WHEN pg_is_in_recovery() THEN pg_last_wal_receive_lsn() ELSE pg_current_wal_lsn() END, restart_lsn) END)::float8 AS retained
FROM pg_replication_slots WHERE slot_name = $1`;

const FACTS = `SELECT pg_is_in_recovery() AS standby,
  a.failed_count::text, a.last_failed_wal, a.last_failed_time,
  current_setting('archive_mode') AS archive_mode, current_setting('archive_command') AS archive_command,
  current_setting('archive_library', true) AS archive_library,
  (SELECT count(*) FROM pg_ls_archive_statusdir() WHERE name LIKE '%.ready')::int AS ready,
  (SELECT coalesce(sum(size), 0) FROM pg_ls_waldir())::text AS wal_bytes
FROM pg_stat_archiver a`;

// Standbys only: Coffer's own receiver (named by its slot) streams too, but replays nothing and is no standby.
const REPLICAS = `SELECT coalesce(nullif(application_name, ''), host(client_addr), 'local') AS name, state,
  coalesce(extract(epoch FROM replay_lag), 0)::float8 AS lag_seconds,
  coalesce(pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn), 0)::float8 AS lag_bytes
FROM pg_stat_replication WHERE application_name IS DISTINCT FROM $1 ORDER BY 1`;

const SEGMENT = /^([0-9A-F]{8})([0-9A-F]{8})([0-9A-F]{8})(\.[0-9A-F]{8}\.backup)?$/;

/**
 * The LSN up to which `name` says WAL is archived: the end of a segment, or
 * the start of the segment a backup history file names (which is archived
 * before that segment completes). Timeline history and partial files say
 * nothing of it.
 */
export function archivedEndOf(name: string, segmentBytes: number): bigint | undefined {
  const m = SEGMENT.exec(name);
  if (!m) return undefined;
  const segNo = segmentNumber(name, segmentBytes);
  return (m[4] ? segNo : segNo + 1n) * BigInt(segmentBytes);
}

export interface WalWatchTarget {
  cluster: string;
  stanza: string;
  repository: string;
  connection: string;
  /** Read when a connection is made (a rotated secret is picked up). */
  password?: () => string;
  /** The slot (and application_name) of the cluster's `coffer wal-receive`, when WAL is streamed too. */
  receiverSlot?: string;
}

export class WalWatch {
  private readonly tracker = new RpoTracker();
  private archivedEnd = 0n;
  private connection: Promise<PostgresConnection> | undefined;

  /** One connection, shared by the samples and the looks (made once, even when both ask at the same moment). */
  private client(): Promise<PostgresConnection> {
    this.connection ??= connectPostgres(this.target.connection, 'coffer agent', this.target.password?.()).catch((e: unknown) => {
      this.connection = undefined;
      throw e;
    });
    return this.connection;
  }

  constructor(readonly target: WalWatchTarget) {}

  private position: (Position & { figures: RpoFigures; lsnValue: bigint }) | undefined;
  /** The archived end and next transaction id the WAL past it was last found free of transactions at. */
  private settled: { end: bigint; xid: string } | undefined;
  /** An archived end past which a transaction's record was found: no need to read again until the end moves. */
  private writtenPast: bigint | undefined;
  /** Why the WAL cannot be read (then it is not tried again on this connection). */
  private walReadError: string | undefined;

  /**
   * Whether the WAL written past the archived end holds no transaction's
   * record — only housekeeping (checkpoints, running-transaction snapshots)
   * — while no transaction holds an id and nothing waits to be written: then
   * every transaction before the next id is in the repository. Read only
   * when it can change the answer and is small (at most 1 MiB).
   */
  private async nothingCommittedPast(p: Position, end: bigint, lsn: bigint, segmentBytes: number): Promise<boolean> {
    if (p.timeline === null || p.insert_lsn === null || this.walReadError !== undefined) return false;
    if (lsn <= end || lsn - end > BigInt(Math.min(1 << 20, segmentBytes - 1)) || end % BigInt(segmentBytes) !== 0n) return false;
    if (p.oldest_xid !== p.next_xid || parseLsn(p.insert_lsn) !== lsn) return false;
    if (this.writtenPast === end || (this.settled?.end === end && this.settled.xid === p.next_xid)) return false;
    const name = segmentName(parseInt(p.timeline, 16), end / BigInt(segmentBytes), segmentBytes);
    let bytes: Buffer;
    try {
      bytes = (await (await this.client()).query<{ b: Buffer }>('SELECT pg_read_binary_file($1, 0, $2) AS b', [`pg_wal/${name}`, Number(lsn - end)])).rows[0]!.b;
    } catch (e) {
      if ((e as { code?: string }).code === '42501') this.walReadError = `cannot read pg_wal: ${(e as Error).message}`;
      return false;
    }
    const found = walTransactionIds(bytes, end);
    if (typeof found === 'string') return false;
    if (found.xids.length > 0) {
      this.writtenPast = end;
      return false;
    }
    this.settled = { end, xid: p.next_xid };
    return true;
  }

  /**
   * Samples the write position and next transaction id (the RPO's evidence:
   * the more often, the closer the figure). Throws when the server does not
   * answer; `look` reports that.
   */
  async sample(now = new Date()): Promise<void> {
    const p = (await (await this.client()).query<Position>(POSITION, [this.target.receiverSlot ?? null])).rows[0]!;
    const segmentBytes = Number(p.segment_bytes);
    const archived = p.last_archived_wal ? archivedEndOf(p.last_archived_wal, segmentBytes) : undefined;
    // Never backwards: the statistics may be reset, and a backup history file names an earlier point.
    if (archived !== undefined && archived > this.archivedEnd) this.archivedEnd = archived;
    // The receiver reports flushed only what the repository holds: its position is the archive's end too.
    const streamed = p.streamed_lsn ? parseLsn(p.streamed_lsn) : undefined;
    if (streamed !== undefined && streamed > this.archivedEnd) this.archivedEnd = streamed;
    const lsnValue = p.lsn ? parseLsn(p.lsn) : this.archivedEnd;
    const settled = await this.nothingCommittedPast(p, this.archivedEnd, lsnValue, segmentBytes);
    const figures = this.tracker.observe(now.getTime(), lsnValue, BigInt(p.next_xid), this.archivedEnd, segmentBytes, p.last_archived_time?.getTime(), settled);
    this.position = { ...p, figures, lsnValue };
  }

  /** Samples and looks at everything else once; a server that does not answer makes a status with `ok: false` and the reason. */
  async look(now = new Date()): Promise<WalStatus> {
    const t = this.target;
    const base = { cluster: t.cluster, stanza: t.stanza, repository: t.repository, checkedAt: now.toISOString() };
    try {
      await this.sample(now);
      const p = this.position!;
      const client = await this.client();
      const f = (await client.query<Facts>(FACTS)).rows[0]!;
      const replicas = f.standby ? [] : (await client.query<{ name: string; state: string; lag_seconds: number; lag_bytes: number }>(REPLICAS, [t.receiverSlot ?? null])).rows;
      const slot = t.receiverSlot ? (await client.query<{ active: boolean; wal_status: string | null; retained: number | null }>(SLOT, [t.receiverSlot])).rows[0] : undefined;
      return {
        ...base,
        ok: true,
        standby: f.standby,
        lsn: formatLsn(p.lsnValue),
        ...(this.archivedEnd > 0n ? { archivedThrough: formatLsn(this.archivedEnd) } : {}),
        ...(p.last_archived_wal ? { lastArchivedWal: p.last_archived_wal } : {}),
        ...(p.last_archived_time ? { lastArchivedAt: p.last_archived_time.toISOString() } : {}),
        ...p.figures,
        readyFiles: f.ready,
        pgWalBytes: Number(f.wal_bytes),
        archiveFailures: Number(f.failed_count),
        ...(f.last_failed_wal ? { lastFailedWal: f.last_failed_wal } : {}),
        ...(f.last_failed_time ? { lastFailedAt: f.last_failed_time.toISOString() } : {}),
        archiving: (f.archive_mode === 'on' || f.archive_mode === 'always') && (f.archive_command !== '' || (f.archive_library ?? '') !== ''),
        replicas: replicas.map((r) => ({ name: r.name, state: r.state, replayLagSeconds: r.lag_seconds, replayLagBytes: r.lag_bytes })),
        ...(this.walReadError ? { walReadError: this.walReadError } : {}),
        ...(t.receiverSlot
          ? {
              receiverSlot: {
                name: t.receiverSlot,
                exists: slot !== undefined,
                active: slot?.active ?? false,
                ...(slot?.wal_status ? { walStatus: slot.wal_status } : {}),
                ...(slot?.retained != null ? { retainedBytes: slot.retained } : {}),
                ...(p.streamed_lsn ? { streamedThrough: p.streamed_lsn } : {}),
              },
            }
          : {}),
      };
    } catch (e) {
      await this.close();
      return { ...base, ok: false, error: (e as Error).message };
    }
  }

  async close(): Promise<void> {
    const c = this.connection;
    this.connection = undefined;
    this.walReadError = undefined; // a new connection may have the right (a grant given meanwhile)
    await (await c?.catch(() => undefined))?.end().catch(() => undefined);
  }
}
