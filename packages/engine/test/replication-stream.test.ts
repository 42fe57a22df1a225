/**
 * The streaming replication messages a WAL receiver reads and writes, and the
 * assembly of streamed WAL into segments: whatever sizes the server sends it
 * in, the segments that come out are the stream's bytes cut at segment
 * boundaries, named in order; a gap or an overlap is refused.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { decodeReplicationMessage, decodeStandbyStatus, encodeKeepalive, encodeStandbyStatus, encodeXLogData, SegmentAssembler, SourceError } from '@coffer/engine';

const lsn = fc.bigInt({ min: 0n, max: 2n ** 64n - 1n });
const when = fc.date({ min: new Date('2000-01-02T00:00:00Z'), max: new Date('2200-01-01T00:00:00Z'), noInvalidDate: true });

describe('replication messages', () => {
  it('XLogData, keepalives and status updates read back as written', () => {
    fc.assert(
      fc.property(lsn, lsn, when, fc.uint8Array({ maxLength: 300 }), fc.boolean(), (a, b, at, data, reply) => {
        const x = decodeReplicationMessage(encodeXLogData(a, b, at, Buffer.from(data)));
        expect(x).toEqual({ kind: 'xlog', start: a, serverEnd: b, sentAt: at, data: Buffer.from(data) });
        expect(decodeReplicationMessage(encodeKeepalive(b, at, reply))).toEqual({ kind: 'keepalive', serverEnd: b, sentAt: at, replyRequested: reply });
        const s = { written: a, flushed: b, applied: a, at, replyRequested: reply };
        expect(decodeStandbyStatus(encodeStandbyStatus(s))).toEqual(s);
      }),
    );
  });

  it('says why it cannot read a message, never throws', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 40 }), (bytes) => {
        const r = decodeReplicationMessage(Buffer.from(bytes));
        if (typeof r !== 'string') expect(['xlog', 'keepalive']).toContain(r.kind);
      }),
    );
    expect(decodeReplicationMessage(Buffer.from([0x77, 1, 2]))).toMatch(/shorter than its header/);
    expect(decodeReplicationMessage(Buffer.from([0x64]))).toMatch(/unknown replication message type 0x64/);
    // The protocol's epoch: 2000-01-01 is time 0.
    expect(encodeKeepalive(0n, new Date('2000-01-01T00:00:00Z'), false).readBigInt64BE(9)).toBe(0n);
  });
});

describe('SegmentAssembler', () => {
  const SEG = 64;
  it('cuts the stream at segment boundaries, in order, whatever the message sizes; resumes from a prefix', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 1000 }), fc.integer({ min: 0, max: SEG - 1 }), fc.uint8Array({ minLength: 1, maxLength: 600 }), fc.array(fc.integer({ min: 0, max: 150 }), { maxLength: 30 }), (segNo, offset, stream, cuts) => {
        const segStart = BigInt(segNo * SEG);
        const prefix = Buffer.alloc(offset, 7);
        const a = new SegmentAssembler(3, SEG, segStart + BigInt(offset), prefix);
        const all = Buffer.concat([prefix, Buffer.from(stream)]);
        const out: { name: string; start: bigint; bytes: Buffer }[] = [];
        let at = 0;
        for (const c of [...cuts, stream.length]) {
          const n = Math.min(c, stream.length - at);
          out.push(...a.add(a.position, Buffer.from(stream.subarray(at, at + n))).map((s) => ({ ...s, bytes: Buffer.from(s.bytes) })));
          at += n;
        }
        expect(a.position).toBe(segStart + BigInt(all.length));
        const whole = Math.floor(all.length / SEG);
        expect(out.map((s) => s.start)).toEqual(Array.from({ length: whole }, (_, i) => segStart + BigInt(i * SEG)));
        for (const [i, s] of out.entries()) {
          expect(s.bytes.equals(all.subarray(i * SEG, (i + 1) * SEG))).toBe(true);
          const no = BigInt(segNo + i);
          const perLog = BigInt(Math.floor(0x100000000 / SEG));
          expect(s.name).toBe(`00000003${(no / perLog).toString(16).toUpperCase().padStart(8, '0')}${(no % perLog).toString(16).toUpperCase().padStart(8, '0')}`);
        }
        expect(a.open().bytes.equals(all.subarray(whole * SEG))).toBe(true);
      }),
    );
  });

  it('refuses a gap and an overlap, and a prefix that does not fit', () => {
    const a = new SegmentAssembler(1, SEG, 128n);
    a.add(128n, Buffer.alloc(10));
    expect(() => a.add(140n, Buffer.alloc(1))).toThrow(SourceError);
    expect(() => a.add(140n, Buffer.alloc(1))).toThrow(/2 bytes would be missing/);
    expect(() => a.add(130n, Buffer.alloc(1))).toThrow(/received twice/);
    expect(a.position).toBe(138n);
    expect(() => new SegmentAssembler(1, SEG, 130n)).toThrow(/needs the 2 bytes/);
  });
});
