/**
 * Streaming WAL into the repository over the replication protocol, as
 * pg_receivewal streams it into a directory: a physical replication slot
 * keeps the server's WAL until the receiver says it is safe, the stream
 * starts where the repository's archive of the current timeline ends, each
 * segment is archived (the same records and checks as `wal-push`) as soon as
 * it is complete, and only then reported to the server as written and
 * flushed. So the slot never lets the server recycle WAL the repository does
 * not hold, and a receiver killed at any moment resumes from the archive's
 * end with nothing lost: what it had not archived, the slot still holds.
 *
 * Between segment boundaries, what was received of the open segment is made
 * durable every `flushIntervalMs` (or `flushBytes`) as its streamed prefix,
 * and then reported flushed: the RPO is about the flush interval. In
 * synchronous mode every message is flushed as soon as the previous flush
 * is done, so a commit that waits for this standby waits for the repository.
 */
import type pg from 'pg';
import { both } from 'pg-copy-streams';
import type { Repository } from '../repository/repository.js';
import { InvalidArgumentError, PostgresError, SourceError } from '../errors.js';
import { connect } from './connection.js';
import { formatLsn, parseLsn } from './layout.js';
import { decodeReplicationMessage, encodeStandbyStatus } from './replication-messages.js';
import { RunningDigest } from './running-digest.js';
import { SegmentAssembler, type AssembledSegment } from './segment-assembler.js';
import { DEFAULT_STANZA } from './stanza.js';
import { WalStreamArchiver, type StoredPrefix } from './wal.js';
import { repositoryWalEnd } from './wal-end.js';

export interface WalReceiverOptions {
  /** libpq connection string (the replication connection is made from it). */
  connection?: string;
  password?: string;
  stanza?: string;
  /** The physical replication slot (created when missing; default `coffer`). */
  slot?: string;
  /** How often the receiver tells the server where it stands even when nothing was archived (default 10 s). */
  statusIntervalMs?: number;
  /** How often what was received of the open segment is made durable as its streamed prefix (default 1000 ms). */
  flushIntervalMs?: number;
  /** Or sooner, once this many bytes wait (default 4 MiB). */
  flushBytes?: number;
  /** The connection is taken for lost after this long without a message (default 60 s; the server's keepalives come every wal_sender_timeout / 2). */
  receiveTimeoutMs?: number;
  /**
   * Flush on every message rather than every interval, for a receiver listed
   * in `synchronous_standby_names`: each commit waits for our flush, and
   * those arriving during one flush share the next.
   */
  synchronous?: boolean;
  /** Ends the stream: what is archived stays, the rest the slot keeps. */
  signal?: AbortSignal;
  onProgress?: (p: WalReceiverProgress) => void;
}

export interface WalReceiverProgress {
  /** `started`: streaming from `start`; `flushed`: the open segment's prefix is durable; `archived`: a whole segment is. */
  event: 'started' | 'flushed' | 'archived';
  timeline: number;
  systemIdentifier: string;
  /** Where the stream started. */
  start: bigint;
  /** Received up to (not all of it durable). */
  received: bigint;
  /** Durable in the repository up to: what the server was told. */
  durable: bigint;
  /** The segment just archived, if this progress is about one. */
  archived?: string;
  /** How long making this flush or segment durable took, ms (its share of the RPO beyond the flush interval). */
  writeMs?: number;
  /** The server's slot could not give WAL back to the archive's end: segments from `gapFrom` to `start` must come from archive_command. */
  gapFrom?: bigint;
}

export interface WalReceiverResult {
  /** `stopped`: the signal; `server-ended`: the server ended the stream (a timeline switch, a shutdown). */
  reason: 'stopped' | 'server-ended';
  durable: bigint;
}

interface Identity {
  systemid: string;
  timeline: number;
  xlogpos: string;
}

const SLOT_NAME = /^[a-z0-9_]{1,63}$/;

/** Streams WAL from the server into `repo` until the signal or the server ends it. */
export async function receiveWal(repo: Repository, options: WalReceiverOptions = {}): Promise<WalReceiverResult> {
  const slot = options.slot ?? 'coffer';
  if (!SLOT_NAME.test(slot)) throw new InvalidArgumentError('--slot', `${JSON.stringify(slot)} is not a replication slot name (lower-case letters, digits and _, at most 63)`);
  const stanza = options.stanza ?? DEFAULT_STANZA;
  // Named by its slot, so that synchronous_standby_names can name it (`ANY 1 (standby, coffer)`).
  const client = await connect(options.connection, slot, options.password, { replication: true });
  try {
    const id = await simple<Identity>(client, 'IDENTIFY_SYSTEM', 'identify the system');
    const segmentBytes = parseSize((await simple<{ wal_segment_size: string }>(client, 'SHOW wal_segment_size', 'read wal_segment_size')).wal_segment_size);
    const restart = await ensureSlot(client, slot);
    const size = BigInt(segmentBytes);
    // Streaming starts after the newest whole segment: a streamed prefix past it is made again, whole or longer.
    const archivedEnd = (await repositoryWalEnd(repo, { stanza, systemIdentifier: id.systemid }, id.timeline, segmentBytes)).segments;
    // The slot holds WAL from its restart point's segment on; before that, only what was archived is anywhere.
    const held = restart !== undefined ? restart - (restart % size) : undefined;
    const current = parseLsn(id.xlogpos);
    // A timeline after the first begins where its history says: its history file goes into the repository
    // first (its segments are refused without it), and with nothing of it archived yet the stream starts at
    // the segment of the switch (that segment on the new timeline holds the old one's WAL before the switch).
    let switchedAt: bigint | undefined;
    if (id.timeline > 1) {
      const history = await timelineHistory(client, id.timeline);
      switchedAt = history.switchedAt;
      const archiver = new WalStreamArchiver(repo, { stanza, systemIdentifier: id.systemid });
      try {
        await archiver.file(history.name, history.content);
      } finally {
        await archiver.close();
      }
    }
    let start = archivedEnd ?? (switchedAt !== undefined ? switchedAt - (switchedAt % size) : undefined) ?? held ?? current - (current % size);
    let gapFrom: bigint | undefined;
    if (held !== undefined && start < held) {
      gapFrom = start;
      start = held;
    }
    return await stream(client, repo, { ...options, slot, stanza, systemIdentifier: id.systemid, timeline: id.timeline, segmentBytes, start, ...(gapFrom !== undefined ? { gapFrom } : {}) });
  } finally {
    await client.end().catch(() => undefined);
  }
}

async function simple<T>(client: pg.Client, sql: string, step: string): Promise<T> {
  try {
    return (await client.query(sql)).rows[0] as T;
  } catch (e) {
    throw new PostgresError(step, (e as Error).message, { cause: e });
  }
}

/** Timeline `tli`'s history file from the server, and where its parent timeline ended (the last entry's LSN). */
async function timelineHistory(client: pg.Client, tli: number): Promise<{ name: string; content: Buffer; switchedAt: bigint }> {
  const row = await simple<{ filename: string; content: string | Buffer }>(client, `TIMELINE_HISTORY ${tli}`, `read timeline ${tli}'s history`);
  const content = Buffer.isBuffer(row.content) ? row.content : Buffer.from(row.content, 'utf8');
  let switchedAt: bigint | undefined;
  for (const line of content.toString('utf8').split('\n')) {
    const m = /^\s*(\d+)\s+([0-9A-Fa-f]+\/[0-9A-Fa-f]+)/.exec(line);
    if (m) switchedAt = parseLsn(m[2]!);
  }
  if (switchedAt === undefined) throw new SourceError(row.filename, `timeline ${tli}'s history names no switch point`);
  return { name: row.filename, content, switchedAt };
}

/** Creates the slot when missing (reserving WAL from now); its restart LSN where the server can say (15+). */
async function ensureSlot(client: pg.Client, slot: string): Promise<bigint | undefined> {
  try {
    await client.query(`CREATE_REPLICATION_SLOT ${slot} PHYSICAL RESERVE_WAL`);
  } catch (e) {
    if ((e as { code?: string }).code !== '42710') throw new PostgresError('create the replication slot', (e as Error).message, { cause: e });
  }
  try {
    const row = (await client.query(`READ_REPLICATION_SLOT ${slot}`)).rows[0] as { restart_lsn: string | null } | undefined;
    return row?.restart_lsn ? parseLsn(row.restart_lsn) : undefined;
  } catch {
    return undefined; // before PostgreSQL 15
  }
}


function parseSize(text: string): number {
  const m = /^(\d+)\s*(kB|MB|GB)$/.exec(text.trim());
  if (!m) throw new PostgresError('read wal_segment_size', `cannot read ${JSON.stringify(text)}`);
  return Number(m[1]) * { kB: 1024, MB: 1024 ** 2, GB: 1024 ** 3 }[m[2] as 'kB' | 'MB' | 'GB'];
}

interface StreamSettings extends WalReceiverOptions {
  slot: string;
  stanza: string;
  systemIdentifier: string;
  timeline: number;
  segmentBytes: number;
  start: bigint;
  gapFrom?: bigint;
}

/** At most this many complete segments wait to be archived before the stream is paused (memory stays bounded). */
const MAX_WAITING = 4;
/** A segment's long page header: a prefix shorter than this cannot say which cluster it is from. */
const LONG_HEADER_BYTES = 40;

function stream(client: pg.Client, repo: Repository, s: StreamSettings): Promise<WalReceiverResult> {
  const assembler = new SegmentAssembler(s.timeline, s.segmentBytes, s.start);
  const digest = new RunningDigest();
  const archiver = new WalStreamArchiver(repo, { stanza: s.stanza, systemIdentifier: s.systemIdentifier });
  const size = BigInt(s.segmentBytes);
  const flushIntervalMs = s.flushIntervalMs ?? 1000;
  const flushBytes = s.flushBytes ?? 4 * 1024 * 1024;
  let durable = s.start;
  // The open segment's prefix already in the repository: the next flush and the whole segment build on it.
  let stored: { segment: string; prefix: StoredPrefix } | undefined;
  let lastFlush = performance.now();
  const progress = (event: WalReceiverProgress['event'], extra: { archived?: string; writeMs?: number } = {}) =>
    s.onProgress?.({ event, timeline: s.timeline, systemIdentifier: s.systemIdentifier, start: s.start, received: assembler.position, durable, ...extra, ...(s.gapFrom !== undefined ? { gapFrom: s.gapFrom } : {}) });
  const copy = client.query(both(`START_REPLICATION SLOT ${s.slot} PHYSICAL ${formatLsn(s.start)} TIMELINE ${s.timeline}`, { alignOnCopyDataFrame: true }));
  return new Promise<WalReceiverResult>((resolve, reject) => {
    let settled = false;
    let heardAt = performance.now();
    const receiveTimeoutMs = s.receiveTimeoutMs ?? 60_000;
    const cleanup: (() => void)[] = [];
    let stopping: WalReceiverResult['reason'] | undefined;
    const waiting: AssembledSegment[] = [];
    let busy = false;
    const status = () => {
      // Written and flushed alike: only what the repository holds (a commit waiting on us waits for that).
      if (!settled) copy.write(encodeStandbyStatus({ written: durable, flushed: durable, applied: 0n, at: new Date() }));
    };
    const statusTimer = setInterval(status, s.statusIntervalMs ?? 10_000);
    const flushTimer = setInterval(() => void work(), s.synchronous ? 1000 : flushIntervalMs);
    const finish = (e: unknown, result?: WalReceiverResult) => {
      if (settled) return;
      status();
      settled = true;
      clearInterval(statusTimer);
      clearInterval(flushTimer);
      for (const c of cleanup) c();
      s.signal?.removeEventListener('abort', onAbort);
      copy.removeAllListeners('data');
      void archiver.close();
      if (e) {
        copy.destroy();
        reject(e);
      } else {
        copy.end();
        resolve(result!);
      }
    };
    /** Whether the open segment's unflushed bytes are due: every message when synchronous, else by time or bytes. */
    const flushDue = (unflushed: number) => stopping !== undefined || s.synchronous || unflushed >= flushBytes || performance.now() - lastFlush >= flushIntervalMs;
    // The one writer: complete segments first, in order, then the open segment's prefix when a flush is due.
    const work = async () => {
      if (busy || settled) return;
      busy = true;
      try {
        while (!settled) {
          const seg = waiting[0];
          if (seg) {
            const t0 = performance.now();
            await archiver.file(seg.name, seg.bytes, stored?.segment === seg.name ? stored.prefix : undefined, digest.of(seg.name, seg.bytes));
            waiting.shift();
            if (stored?.segment === seg.name) stored = undefined;
            durable = seg.start + size;
            status();
            progress('archived', { archived: seg.name, writeMs: performance.now() - t0 });
            if (copy.isPaused() && waiting.length < MAX_WAITING) copy.resume();
            continue;
          }
          const open = assembler.open();
          const end = open.start + BigInt(open.bytes.length);
          if (open.bytes.length < LONG_HEADER_BYTES || end <= durable || !flushDue(Number(end - durable))) break;
          // What arrives while this flush is written goes into the next one (commits waiting on us share it).
          lastFlush = performance.now();
          const prefix = await archiver.prefix(open.name, open.bytes, stored?.segment === open.name ? stored.prefix : undefined, digest.of(open.name, open.bytes));
          stored = { segment: open.name, prefix };
          if (end > durable) durable = end;
          status();
          progress('flushed', { writeMs: performance.now() - lastFlush });
        }
      } catch (e) {
        finish(e);
        return;
      } finally {
        busy = false;
      }
      if (stopping !== undefined && !settled) finish(failure, failure ? undefined : { reason: stopping, durable });
    };
    let failure: unknown;
    const stop = (reason: WalReceiverResult['reason'], e?: unknown) => {
      // What was received is made durable first, even when the connection failed (the server may be gone for
      // good: what reached us is all that is left of its last commits).
      if (stopping === undefined) {
        stopping = reason;
        failure = e;
      }
      copy.pause();
      void work();
    };
    const onAbort = () => stop('stopped');
    if (s.signal?.aborted) return finish(undefined, { reason: 'stopped', durable });
    s.signal?.addEventListener('abort', onAbort);
    copy.on('data', (payload: Buffer) => {
      heardAt = performance.now();
      const m = decodeReplicationMessage(payload);
      if (typeof m === 'string') return finish(new SourceError('replication stream', m));
      if (m.kind === 'keepalive') {
        if (m.replyRequested) status();
        return;
      }
      try {
        waiting.push(...assembler.add(m.start, m.data));
      } catch (e) {
        return finish(e);
      }
      if (waiting.length >= MAX_WAITING) copy.pause();
      void work();
    });
    const lost = (why: string, e?: Error) => stop('server-ended', new PostgresError('stream WAL', why, e ? { cause: e } : undefined));
    copy.on('error', (e: Error) => lost(e.message, e));
    // A connection that ends under the stream (the server's host gone) ends the client, not always the stream.
    client.on('error', (e: Error) => lost(e.message, e));
    client.on('end', () => lost('the server closed the connection'));
    // Nor does a silent network: the server sends keepalives every wal_sender_timeout / 2, so a long silence is a loss.
    const silence = setInterval(() => {
      if (performance.now() - heardAt > receiveTimeoutMs) lost(`nothing from the server for ${Math.round(receiveTimeoutMs / 1000)} s`);
    }, Math.min(1000, receiveTimeoutMs));
    silence.unref();
    cleanup.push(() => clearInterval(silence));
    copy.on('end', () => stop('server-ended'));
    progress('started');
  });
}
