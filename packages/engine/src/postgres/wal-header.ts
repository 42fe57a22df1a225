/**
 * What the first page of a WAL segment says about the cluster that wrote it.
 * Every segment starts with an XLogLongPageHeaderData (little-endian on the
 * platforms PostgreSQL archives from here):
 *
 *   0 xlp_magic u16 · 2 xlp_info u16 · 4 xlp_tli u32 · 8 xlp_pageaddr u64 ·
 *   16 xlp_rem_len u32 · (pad) · 24 xlp_sysid u64 · 32 xlp_seg_size u32 ·
 *   36 xlp_xlog_blcksz u32
 *
 * History and backup history files are text and have no such header.
 */

/** XLP_LONG_HEADER in xlp_info. */
const XLP_LONG_HEADER = 0x0002;

/** XLOG_PAGE_MAGIC of each major version this code knows (the magic changes with every major). */
const MAGIC_MAJOR: ReadonlyMap<number, number> = new Map([
  [0xd106, 13],
  [0xd10d, 14],
  [0xd110, 15],
  [0xd113, 16],
  [0xd116, 17],
  [0xd118, 18],
]);

export interface WalSegmentHeader {
  systemIdentifier: string;
  segmentSize: number;
  blockSize: number;
  /** The major version that writes this page magic, when known. */
  major?: number;
  magic: number;
}

/** The long header of a segment's first page, or a reason it has none. */
export function readSegmentHeader(bytes: Uint8Array): WalSegmentHeader | string {
  if (bytes.byteLength < 40) return `${bytes.byteLength} bytes is too short for a WAL segment`;
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const magic = b.readUInt16LE(0);
  const info = b.readUInt16LE(2);
  if ((info & XLP_LONG_HEADER) === 0) return 'its first page has no long header (not a WAL segment)';
  const segmentSize = b.readUInt32LE(32);
  const blockSize = b.readUInt32LE(36);
  // A real segment size is a power of two from 1 MiB to 1 GiB; anything else is not a header.
  if (segmentSize < 1 << 20 || segmentSize > 1 << 30 || (segmentSize & (segmentSize - 1)) !== 0) return `its header names a segment size of ${segmentSize} bytes`;
  const major = MAGIC_MAJOR.get(magic);
  return { systemIdentifier: b.readBigUInt64LE(24).toString(), segmentSize, blockSize, magic, ...(major !== undefined ? { major } : {}) };
}
