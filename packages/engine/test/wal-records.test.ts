/**
 * Reading transaction ids from the start of a WAL segment: records laid out
 * the way PostgreSQL lays them out (8-byte aligned, split across pages, page
 * headers between), cut where the server may have stopped writing, read back
 * to exactly the ids of the records whose header was written.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { walTransactionIds } from '../src/postgres/wal-records.js';

const MAGIC = 0xd110;
const SEG_START = 0x3_0000_0000n + 5n * 16_777_216n;

interface Rec {
  length: number;
  xid: number;
  switch: boolean;
}

/** The segment's bytes and where each record's header ends (file offset). */
function layout(records: readonly Rec[], blockSize: number): { bytes: Buffer; headerEnds: number[] } {
  const pages = new Map<number, Buffer>();
  const page = (n: number) => {
    let p = pages.get(n);
    if (!p) {
      p = Buffer.alloc(blockSize);
      p.writeUInt16LE(MAGIC, 0);
      p.writeUInt16LE(n === 0 ? 0x0002 : 0, 2);
      p.writeUInt32LE(1, 4);
      p.writeBigUInt64LE(SEG_START + BigInt(n * blockSize), 8);
      if (n === 0) {
        p.writeBigUInt64LE(7_000_000_000_000_000_000n, 24);
        p.writeUInt32LE(16_777_216, 32);
        p.writeUInt32LE(blockSize, 36);
      }
      pages.set(n, p);
    }
    return p;
  };
  const headerSize = (n: number) => (n === 0 ? 40 : 24);
  let pos = 40; // file offset of the next byte
  const headerEnds: number[] = [];
  let end = pos;
  for (const r of records) {
    pos = Math.ceil(pos / 8) * 8;
    if (pos % blockSize === 0) pos += headerSize(pos / blockSize);
    const body = Buffer.alloc(r.length);
    body.writeUInt32LE(r.length, 0);
    body.writeUInt32LE(r.xid, 4);
    body[16] = r.switch ? 0x40 : 0x10;
    body[17] = r.switch ? 0 : 10;
    for (let i = 24; i < r.length; i++) body[i] = (i * 31 + r.xid) & 0xff;
    for (let i = 0; i < r.length; i++) {
      if (pos % blockSize === 0) {
        const n = pos / blockSize;
        const p = page(n);
        p.writeUInt16LE(p.readUInt16LE(2) | 0x0001, 2);
        p.writeUInt32LE(r.length - i, 16);
        pos += headerSize(n);
      }
      page(Math.floor(pos / blockSize))[pos % blockSize] = body[i]!;
      pos++;
      if (i === 23) headerEnds.push(pos);
    }
    end = pos;
    if (r.switch) break;
  }
  page(0);
  const count = Math.floor(end / blockSize) + 1;
  const bytes = Buffer.concat(Array.from({ length: count }, (_, n) => page(n)));
  return { bytes, headerEnds };
}

const recordArb = fc.record({ length: fc.oneof(fc.integer({ min: 24, max: 200 }), fc.integer({ min: 24, max: 20_000 })), xid: fc.oneof(fc.constant(0), fc.integer({ min: 3, max: 0xffff_ffff })), switch: fc.integer({ min: 0, max: 20 }).map((n) => n === 0) });

describe('transaction ids in the WAL', () => {
  it('reads the id of every record whose header was written, wherever the write stopped', () => {
    fc.assert(
      fc.property(fc.array(recordArb, { minLength: 1, maxLength: 60 }), fc.constantFrom(1024, 8192), fc.double({ min: 0, max: 1, noNaN: true }), (records, blockSize, cutAt) => {
        const { bytes, headerEnds } = layout(records, blockSize);
        const cut = Math.max(40, Math.floor(bytes.length * cutAt));
        const r = walTransactionIds(bytes.subarray(0, cut), SEG_START);
        if (typeof r === 'string') throw new Error(r);
        const upTo = records.findIndex((x) => x.switch);
        const written = records.slice(0, upTo >= 0 ? upTo + 1 : records.length).filter((_, i) => headerEnds[i]! <= cut);
        expect(r.records).toBe(written.length);
        expect(r.xids).toEqual(written.map((x) => x.xid).filter((x) => x !== 0));
      }),
      { numRuns: 300 },
    );
  });

  it('cannot tell when the segment is not the one expected, or a record continues from the one before', () => {
    const { bytes } = layout([{ length: 100, xid: 9, switch: false }], 8192);
    expect(walTransactionIds(bytes, SEG_START + 16_777_216n)).toMatch(/recycled or other segment/);
    const cont = Buffer.from(bytes);
    cont.writeUInt16LE(0x0003, 2);
    expect(walTransactionIds(cont, SEG_START)).toMatch(/continues from the previous segment/);
    expect(walTransactionIds(bytes.subarray(0, 20), SEG_START)).toMatch(/no segment header/);
  });
});
