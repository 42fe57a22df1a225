/**
 * The messages of PostgreSQL's streaming replication protocol that a WAL
 * receiver exchanges inside COPY BOTH, after START_REPLICATION (big-endian):
 *
 * From the server:
 *   'w' XLogData:          u64 start LSN · u64 server's end of WAL · i64 send time · WAL bytes
 *   'k' primary keepalive: u64 server's end of WAL · i64 send time · u8 reply requested
 *
 * To the server:
 *   'r' standby status update: u64 written · u64 flushed · u64 applied · i64 time · u8 reply requested
 *
 * Times are microseconds since 2000-01-01 00:00:00 UTC. What a receiver
 * reports as flushed is what the server may recycle, and what a synchronous
 * commit waits for: Coffer reports only what is durable in the repository.
 */

/** Microseconds from the Unix epoch to PostgreSQL's (2000-01-01). */
const PG_EPOCH_US = 946_684_800_000_000n;

export type ReplicationMessage =
  | { kind: 'xlog'; start: bigint; serverEnd: bigint; sentAt: Date; data: Buffer }
  | { kind: 'keepalive'; serverEnd: bigint; sentAt: Date; replyRequested: boolean };

const toDate = (pgMicros: bigint) => new Date(Number((pgMicros + PG_EPOCH_US) / 1000n));
const toPgMicros = (d: Date) => BigInt(d.getTime()) * 1000n - PG_EPOCH_US;

/** One CopyData payload from the server; a string says why it is not a message this receiver knows. */
export function decodeReplicationMessage(payload: Buffer): ReplicationMessage | string {
  const kind = payload[0];
  if (kind === 0x77 /* w */) {
    if (payload.length < 25) return `an XLogData message of ${payload.length} bytes is shorter than its header`;
    return { kind: 'xlog', start: payload.readBigUInt64BE(1), serverEnd: payload.readBigUInt64BE(9), sentAt: toDate(payload.readBigInt64BE(17)), data: payload.subarray(25) };
  }
  if (kind === 0x6b /* k */) {
    if (payload.length < 18) return `a keepalive of ${payload.length} bytes is shorter than 18`;
    return { kind: 'keepalive', serverEnd: payload.readBigUInt64BE(1), sentAt: toDate(payload.readBigInt64BE(9)), replyRequested: payload[17] === 1 };
  }
  return `unknown replication message type ${kind === undefined ? '(empty)' : `0x${kind.toString(16)}`}`;
}

export interface StandbyStatus {
  written: bigint;
  flushed: bigint;
  applied: bigint;
  at: Date;
  replyRequested?: boolean;
}

/** The standby status update carrying `s`. */
export function encodeStandbyStatus(s: StandbyStatus): Buffer {
  const b = Buffer.alloc(34);
  b[0] = 0x72; // r
  b.writeBigUInt64BE(s.written, 1);
  b.writeBigUInt64BE(s.flushed, 9);
  b.writeBigUInt64BE(s.applied, 17);
  b.writeBigInt64BE(toPgMicros(s.at), 25);
  b[33] = s.replyRequested ? 1 : 0;
  return b;
}

/** Reads a standby status update back (tests, and a receiver checking what it sends). */
export function decodeStandbyStatus(b: Buffer): StandbyStatus | string {
  if (b.length !== 34 || b[0] !== 0x72) return 'not a standby status update';
  return { written: b.readBigUInt64BE(1), flushed: b.readBigUInt64BE(9), applied: b.readBigUInt64BE(17), at: toDate(b.readBigInt64BE(25)), replyRequested: b[33] === 1 };
}

/** The XLogData message a server would send (tests stand in for a server with it). */
export function encodeXLogData(start: bigint, serverEnd: bigint, sentAt: Date, data: Buffer): Buffer {
  const h = Buffer.alloc(25);
  h[0] = 0x77;
  h.writeBigUInt64BE(start, 1);
  h.writeBigUInt64BE(serverEnd, 9);
  h.writeBigInt64BE(toPgMicros(sentAt), 17);
  return Buffer.concat([h, data]);
}

/** The keepalive a server would send. */
export function encodeKeepalive(serverEnd: bigint, sentAt: Date, replyRequested: boolean): Buffer {
  const b = Buffer.alloc(18);
  b[0] = 0x6b;
  b.writeBigUInt64BE(serverEnd, 1);
  b.writeBigInt64BE(toPgMicros(sentAt), 9);
  b[17] = replyRequested ? 1 : 0;
  return b;
}
