/**
 * Which transactions wrote the WAL at the start of a segment. The agent reads
 * the few bytes a server has written past the end of what the repository
 * holds and asks whether any of them belong to a transaction: if none does,
 * nothing anyone committed is at risk, and the RPO is 0 however many
 * housekeeping records (checkpoints, running-transaction snapshots) follow a
 * segment switch.
 *
 * Layout (little-endian): every page of XLOG_BLCKSZ bytes starts with a page
 * header — the segment's first page the long one (40 bytes), the others the
 * short one (24) —
 *
 *   0 xlp_magic u16 · 2 xlp_info u16 · 4 xlp_tli u32 · 8 xlp_pageaddr u64 · 16 xlp_rem_len u32
 *
 * and records follow each other, 8-byte aligned, across page boundaries (a
 * record, its header too, continues after the next page's header). Each record
 * starts with XLogRecord:
 *
 *   0 xl_tot_len u32 · 4 xl_xid u32 · 8 xl_prev u64 · 16 xl_info u8 · 17 xl_rmid u8 · 20 xl_crc u32
 */

const XLP_FIRST_IS_CONTRECORD = 0x0001;
const XLP_LONG_HEADER = 0x0002;
const LONG_HEADER = 40;
const SHORT_HEADER = 24;
const RECORD_HEADER = 24;
const RM_XLOG_ID = 0;
const XLOG_SWITCH = 0x40;

export interface WalTransactions {
  /** The transaction ids of the records, in order (0, no transaction, left out). */
  xids: number[];
  /** Records read (whole or begun). */
  records: number;
}

/**
 * The transaction ids of the records in `bytes`, the first bytes of the
 * segment that starts at LSN `segmentStart`, up to where the server has
 * written. A string when it cannot tell: not the segment expected (a recycled
 * file, another timeline's), or a record that began in the previous segment
 * (whose transaction id is there, not here).
 */
export function walTransactionIds(bytes: Uint8Array, segmentStart: bigint): WalTransactions | string {
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (b.length < LONG_HEADER) return `${b.length} bytes hold no segment header`;
  const magic = b.readUInt16LE(0);
  const info = b.readUInt16LE(2);
  if ((info & XLP_LONG_HEADER) === 0) return 'the first page has no long header';
  if (b.readBigUInt64LE(8) !== segmentStart) return `the first page is at ${b.readBigUInt64LE(8).toString(16)}, not ${segmentStart.toString(16)} (a recycled or other segment)`;
  if (info & XLP_FIRST_IS_CONTRECORD) return 'a record continues from the previous segment';
  const blockSize = b.readUInt32LE(36);
  if (blockSize < 1024 || blockSize > 65536 || (blockSize & (blockSize - 1)) !== 0) return `the header names a page size of ${blockSize}`;

  // The records' bytes with the page headers taken out: pages are whole multiples of 8 bytes and so are the
  // headers, so a record's alignment is the same here as in the file.
  const parts: Buffer[] = [];
  for (let page = 0; page * blockSize < b.length; page++) {
    const at = page * blockSize;
    if (b.length - at < SHORT_HEADER) break;
    if (b.readUInt16LE(at) !== magic || b.readBigUInt64LE(at + 8) !== segmentStart + BigInt(at)) break; // past what was written
    const header = b.readUInt16LE(at + 2) & XLP_LONG_HEADER ? LONG_HEADER : SHORT_HEADER;
    parts.push(b.subarray(at + header, Math.min(at + blockSize, b.length)));
  }
  const stream = Buffer.concat(parts);
  const out: WalTransactions = { xids: [], records: 0 };
  for (let pos = 0; pos + RECORD_HEADER <= stream.length; ) {
    const total = stream.readUInt32LE(pos);
    if (total === 0) break; // zeroed space: the end of what was written
    if (total < RECORD_HEADER) return `a record at ${pos} claims ${total} bytes`;
    out.records++;
    const xid = stream.readUInt32LE(pos + 4);
    if (xid !== 0) out.xids.push(xid);
    if (stream[pos + 17] === RM_XLOG_ID && (stream[pos + 16]! & 0xf0) === XLOG_SWITCH) break; // the rest of the segment is padding
    pos += Math.ceil(total / 8) * 8;
  }
  return out;
}
