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
 * This is the whole-segment receiver: the RPO it gives is a segment's worth
 * of traffic, like archive_command's, without archive_command's process per
 * segment. Partial segments (the bytes received since the last boundary made
 * durable every second) build on it.
 */
import type pg from 'pg';
import { both } from 'pg-copy-streams';
import type { Repository } from '../repository/repository.js';
import { InvalidArgumentError, PostgresError, SourceError } from '../errors.js';
import { parseWalKey, WAL_SEGMENT } from '../format/wal-record.js';
import { connect } from './connection.js';
import { formatLsn, parseLsn, segmentNumber } from './layout.js';
import { decodeReplicationMessage, encodeStandbyStatus } from './replication-messages.js';
import { SegmentAssembler, type AssembledSegment } from './segment-assembler.js';
import { DEFAULT_STANZA } from './stanza.js';
import { archiveWalBytes, listWalKeys } from './wal.js';

export interface WalReceiverOptions {
  /** libpq connection string (the replication connection is made from it). */
  connection?: string;
  password?: string;
  stanza?: string;
  /** The physical replication slot (created when missing; default `coffer`). */
  slot?: string;
  /** How often the receiver tells the server where it stands even when nothing was archived (default 10 s). */
  statusIntervalMs?: number;
  /** Ends the stream: what is archived stays, the rest the slot keeps. */
  signal?: AbortSignal;
  onProgress?: (p: WalReceiverProgress) => void;
}

export interface WalReceiverProgress {
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
  const client = await connect(options.connection, 'coffer wal-receive', options.password, { replication: true });
  try {
    const id = await simple<Identity>(client, 'IDENTIFY_SYSTEM', 'identify the system');
    const segmentBytes = parseSize((await simple<{ wal_segment_size: string }>(client, 'SHOW wal_segment_size', 'read wal_segment_size')).wal_segment_size);
    const restart = await ensureSlot(client, slot);
    const size = BigInt(segmentBytes);
    const archivedEnd = await archiveEnd(repo, stanza, id.systemid, id.timeline, segmentBytes);
    // The slot holds WAL from its restart point's segment on; before that, only what was archived is anywhere.
    const held = restart !== undefined ? restart - (restart % size) : undefined;
    const current = parseLsn(id.xlogpos);
    let start = archivedEnd ?? held ?? current - (current % size);
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

/** The end of the newest segment of `timeline` archived for this cluster, if any. */
async function archiveEnd(repo: Repository, stanza: string, systemIdentifier: string, timeline: number, segmentBytes: number): Promise<bigint | undefined> {
  const tli = timeline.toString(16).toUpperCase().padStart(8, '0');
  let newest: string | undefined;
  for (const key of await listWalKeys(repo)) {
    const k = parseWalKey(key);
    if (!k?.scope || k.scope.stanza !== stanza || k.scope.systemIdentifier !== systemIdentifier) continue;
    if (WAL_SEGMENT.test(k.name) && k.name.startsWith(tli) && (newest === undefined || k.name > newest)) newest = k.name;
  }
  if (newest === undefined) return undefined;
  return (segmentNumber(newest, segmentBytes) + 1n) * BigInt(segmentBytes);
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

function stream(client: pg.Client, repo: Repository, s: StreamSettings): Promise<WalReceiverResult> {
  const assembler = new SegmentAssembler(s.timeline, s.segmentBytes, s.start);
  let durable = s.start;
  const progress = (archived?: string) =>
    s.onProgress?.({ timeline: s.timeline, systemIdentifier: s.systemIdentifier, start: s.start, received: assembler.position, durable, ...(archived ? { archived } : {}), ...(s.gapFrom !== undefined ? { gapFrom: s.gapFrom } : {}) });
  const copy = client.query(both(`START_REPLICATION SLOT ${s.slot} PHYSICAL ${formatLsn(s.start)} TIMELINE ${s.timeline}`, { alignOnCopyDataFrame: true }));
  return new Promise<WalReceiverResult>((resolve, reject) => {
    let settled = false;
    const waiting: AssembledSegment[] = [];
    let archiving = false;
    const status = () => {
      // Written and flushed alike: only what the repository holds (a commit waiting on us waits for that).
      if (!settled) copy.write(encodeStandbyStatus({ written: durable, flushed: durable, applied: 0n, at: new Date() }));
    };
    const timer = setInterval(status, s.statusIntervalMs ?? 10_000);
    const finish = (e: unknown, result?: WalReceiverResult) => {
      if (settled) return;
      status();
      settled = true;
      clearInterval(timer);
      s.signal?.removeEventListener('abort', onAbort);
      copy.removeAllListeners('data');
      if (e) {
        copy.destroy();
        reject(e);
      } else {
        copy.end();
        resolve(result!);
      }
    };
    const pump = async () => {
      if (archiving) return;
      archiving = true;
      try {
        while (waiting.length > 0 && !settled) {
          const seg = waiting[0]!;
          await archiveWalBytes(repo, seg.name, seg.bytes, { stanza: s.stanza, systemIdentifier: s.systemIdentifier });
          waiting.shift();
          durable = seg.start + BigInt(s.segmentBytes);
          status();
          progress(seg.name);
          if (copy.isPaused() && waiting.length < MAX_WAITING) copy.resume();
        }
      } catch (e) {
        finish(e);
      } finally {
        archiving = false;
      }
    };
    const onAbort = () => {
      // What is being archived finishes first: a segment half-stored is nothing, a stored one is worth telling.
      const wait = () => (archiving ? setTimeout(wait, 20) : finish(undefined, { reason: 'stopped', durable }));
      wait();
    };
    if (s.signal?.aborted) return finish(undefined, { reason: 'stopped', durable });
    s.signal?.addEventListener('abort', onAbort);
    copy.on('data', (payload: Buffer) => {
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
      void pump();
    });
    copy.on('error', (e: Error) => finish(new PostgresError('stream WAL', e.message, { cause: e })));
    copy.on('end', () => {
      const wait = () => (archiving ? setTimeout(wait, 20) : finish(undefined, { reason: 'server-ended', durable }));
      wait();
    });
    progress();
  });
}
