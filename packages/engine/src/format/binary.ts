/** Small big-endian writer/reader for Coffer's binary records. */
export class BinaryWriter {
  private parts: Buffer[] = [];
  private cur = Buffer.allocUnsafe(64 * 1024);
  private pos = 0;

  private room(n: number): void {
    if (this.pos + n <= this.cur.length) return;
    this.parts.push(this.cur.subarray(0, this.pos));
    this.cur = Buffer.allocUnsafe(Math.max(64 * 1024, n));
    this.pos = 0;
  }
  u32(v: number): this {
    this.room(4);
    this.cur.writeUInt32BE(v, this.pos);
    this.pos += 4;
    return this;
  }
  bytes(b: Uint8Array): this {
    this.room(b.byteLength);
    this.cur.set(b, this.pos);
    this.pos += b.byteLength;
    return this;
  }
  finish(): Buffer {
    return Buffer.concat([...this.parts, this.cur.subarray(0, this.pos)]);
  }
}

export class BinaryReader {
  private pos = 0;
  constructor(private readonly buf: Buffer) {}
  get remaining(): number {
    return this.buf.length - this.pos;
  }
  u32(): number {
    if (this.remaining < 4) throw new RangeError('truncated record');
    const v = this.buf.readUInt32BE(this.pos);
    this.pos += 4;
    return v;
  }
  bytes(n: number): Buffer {
    if (this.remaining < n) throw new RangeError('truncated record');
    const b = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return b;
  }
}
