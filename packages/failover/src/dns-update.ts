/**
 * DNS cutover by RFC 2136 dynamic update, signed with TSIG (RFC 8945), sent
 * by Coffer itself over TCP: BIND, PowerDNS, Knot and the DNS gateways of
 * cloud providers accept it. One update replaces every A (or AAAA) record of
 * the name with the new primary's address. The key's secret comes from the
 * environment or a secret file and is used only to compute the MAC: it is
 * never on a command line, in a message or in a log.
 *
 * The answer's own TSIG is verified: an unsigned or wrongly signed "done"
 * from something in between is not taken for the server's.
 */
import { createHmac, randomInt, timingSafeEqual } from 'node:crypto';
import { isIP, connect } from 'node:net';
import { CutoverError, InvalidArgumentError } from '@coffer/engine';

export type TsigAlgorithm = 'hmac-sha256' | 'hmac-sha512';

export interface TsigKey {
  /** The key's name as the server knows it. */
  name: string;
  algorithm: TsigAlgorithm;
  secret: Buffer;
}

export interface DnsUpdateTarget {
  /** The primary authoritative server (address) and its port (default 53). */
  server: string;
  port?: number;
  /** The zone that holds `name`. */
  zone: string;
  /** The name clients use for the primary. */
  name: string;
  /** TTL of the new record, in seconds (keep it short: resolvers cache it). */
  ttl: number;
  key: TsigKey;
  timeoutMs?: number;
}

/** The server refused or failed the update: `rcode` names its answer (REFUSED, NOTAUTH, BADSIG…, or UNREACHABLE). */
export class DnsUpdateError extends CutoverError {
  constructor(
    where: string,
    readonly rcode: string,
    detail: string,
  ) {
    super(where, `DNS update: ${rcode}: ${detail}`);
  }
}

const RCODES: Record<number, string> = { 0: 'NOERROR', 1: 'FORMERR', 2: 'SERVFAIL', 3: 'NXDOMAIN', 4: 'NOTIMP', 5: 'REFUSED', 6: 'YXDOMAIN', 7: 'YXRRSET', 8: 'NXRRSET', 9: 'NOTAUTH', 10: 'NOTZONE', 16: 'BADSIG', 17: 'BADKEY', 18: 'BADTIME', 22: 'BADTRUNC' };
const TYPE = { A: 1, SOA: 6, AAAA: 28, TSIG: 250 } as const;
const CLASS = { IN: 1, ANY: 255 } as const;
const FUDGE = 300;

/** A name in wire form, lower-cased (TSIG's canonical form), without compression. */
export function wireName(name: string): Buffer {
  const labels = name.replace(/\.$/, '').split('.').filter((l) => l !== '');
  const parts: Buffer[] = [];
  for (const label of labels) {
    const b = Buffer.from(label.toLowerCase(), 'ascii');
    if (b.length > 63) throw new InvalidArgumentError('DNS name', `${JSON.stringify(name)}: a label is longer than 63 bytes`);
    parts.push(Buffer.from([b.length]), b);
  }
  parts.push(Buffer.from([0]));
  const out = Buffer.concat(parts);
  if (out.length > 255) throw new InvalidArgumentError('DNS name', `${JSON.stringify(name)} is longer than 255 bytes`);
  return out;
}

const u16 = (n: number): Buffer => {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(n);
  return b;
};
const u32 = (n: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
};
const u48 = (n: number): Buffer => {
  const b = Buffer.alloc(6);
  b.writeUIntBE(n, 0, 6);
  return b;
};

function rr(name: Buffer, type: number, cls: number, ttl: number, rdata: Buffer): Buffer {
  return Buffer.concat([name, u16(type), u16(cls), u32(ttl), u16(rdata.length), rdata]);
}

/** The update message, unsigned: replace `name`'s A/AAAA records with `address`. */
export function updateMessage(id: number, zone: string, name: string, ttl: number, address: string): Buffer {
  const family = isIP(address);
  if (family === 0) throw new InvalidArgumentError('address', `${JSON.stringify(address)} is not an IP address`);
  const type = family === 4 ? TYPE.A : TYPE.AAAA;
  const rdata = family === 4 ? Buffer.from(address.split('.').map(Number)) : ipv6Bytes(address);
  const zoneWire = wireName(zone);
  const nameWire = wireName(name);
  if (!nameWire.subarray(nameWire.length - zoneWire.length).equals(zoneWire)) throw new InvalidArgumentError('DNS name', `${name} is not in zone ${zone}`);
  // Header: opcode UPDATE (5); one zone, no prerequisite, two updates, no additional (TSIG is added when signed).
  const header = Buffer.concat([u16(id), u16(5 << 11), u16(1), u16(0), u16(2), u16(0)]);
  const zoneSection = Buffer.concat([zoneWire, u16(TYPE.SOA), u16(CLASS.IN)]);
  const removeAll = rr(nameWire, type, CLASS.ANY, 0, Buffer.alloc(0));
  const add = rr(nameWire, type, CLASS.IN, ttl, rdata);
  return Buffer.concat([header, zoneSection, removeAll, add]);
}

function ipv6Bytes(address: string): Buffer {
  const [head, tail] = address.split('::') as [string, string | undefined];
  const groups = (s: string | undefined) => (s ? s.split(':') : []);
  const h = groups(head);
  const t = groups(tail);
  const all = tail === undefined ? h : [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t];
  return Buffer.concat(all.map((g) => u16(parseInt(g, 16))));
}

function mac(key: TsigKey, data: Buffer): Buffer {
  return createHmac(key.algorithm === 'hmac-sha256' ? 'sha256' : 'sha512', key.secret).update(data).digest();
}

/** TSIG variables (RFC 8945 4.3.3) for time `signed`. */
function tsigVariables(key: TsigKey, signed: number, error = 0, other: Buffer = Buffer.alloc(0)): Buffer {
  return Buffer.concat([wireName(key.name), u16(CLASS.ANY), u32(0), wireName(key.algorithm), u48(signed), u16(FUDGE), u16(error), u16(other.length), other]);
}

/** Signs `message` (its additional count has no TSIG yet); returns the signed message and the MAC, which the answer's MAC covers. */
export function signMessage(message: Buffer, key: TsigKey, now = Math.floor(Date.now() / 1000)): { signed: Buffer; mac: Buffer } {
  const m = mac(key, Buffer.concat([message, tsigVariables(key, now)]));
  const rdata = Buffer.concat([wireName(key.algorithm), u48(now), u16(FUDGE), u16(m.length), m, message.subarray(0, 2), u16(0), u16(0)]);
  const signed = Buffer.concat([message, rr(wireName(key.name), TYPE.TSIG, CLASS.ANY, 0, rdata)]);
  signed.writeUInt16BE(message.readUInt16BE(10) + 1, 10);
  return { signed, mac: m };
}

/** Skips a (possibly compressed) name at `at`; returns the offset after it. */
function skipName(b: Buffer, at: number): number {
  for (;;) {
    const len = b[at];
    if (len === undefined) throw new Error('name runs past the message');
    if (len === 0) return at + 1;
    if ((len & 0xc0) === 0xc0) return at + 2;
    at += len + 1;
  }
}

interface Answer {
  id: number;
  rcode: number;
  /** The TSIG record, if the answer carries one: where it starts, its MAC and error. */
  tsig?: { start: number; mac: Buffer; error: number; signed: number; other: Buffer };
}

export function parseAnswer(b: Buffer): Answer {
  if (b.length < 12) throw new Error('answer shorter than a DNS header');
  const id = b.readUInt16BE(0);
  const rcode = b.readUInt16BE(2) & 0x0f;
  const counts = [b.readUInt16BE(4), b.readUInt16BE(6), b.readUInt16BE(8), b.readUInt16BE(10)] as const;
  let at = 12;
  for (let i = 0; i < counts[0]; i++) at = skipName(b, at) + 4;
  for (let i = 0; i < counts[1] + counts[2]; i++) {
    at = skipName(b, at) + 8;
    at += 2 + b.readUInt16BE(at);
  }
  let tsig: Answer['tsig'];
  for (let i = 0; i < counts[3]; i++) {
    const start = at;
    at = skipName(b, at);
    const type = b.readUInt16BE(at);
    const rdlen = b.readUInt16BE(at + 8);
    const rdata = at + 10;
    if (type === TYPE.TSIG) {
      let p = skipName(b, rdata);
      const signed = b.readUIntBE(p, 6);
      p += 8;
      const macLen = b.readUInt16BE(p);
      const m = b.subarray(p + 2, p + 2 + macLen);
      p += 2 + macLen + 2;
      const error = b.readUInt16BE(p);
      const otherLen = b.readUInt16BE(p + 2);
      tsig = { start, mac: Buffer.from(m), error, signed, other: Buffer.from(b.subarray(p + 4, p + 4 + otherLen)) };
    }
    at = rdata + rdlen;
  }
  return { id, rcode, ...(tsig ? { tsig } : {}) };
}

/** Whether `answer` is signed by `key` over the request's MAC (RFC 8945 5.3). */
export function answerSigned(answer: Buffer, parsed: Answer, key: TsigKey, requestMac: Buffer): boolean {
  const t = parsed.tsig;
  if (!t) return false;
  const unsigned = Buffer.from(answer.subarray(0, t.start));
  unsigned.writeUInt16BE(unsigned.readUInt16BE(10) - 1, 10);
  const expected = mac(key, Buffer.concat([u16(requestMac.length), requestMac, unsigned, tsigVariables(key, t.signed, t.error, t.other)]));
  return expected.length === t.mac.length && timingSafeEqual(expected, t.mac);
}

function exchange(server: string, port: number, message: Buffer, timeoutMs: number): Promise<Buffer<ArrayBufferLike>> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: server, port });
    let got: Buffer = Buffer.alloc(0);
    const timer = setTimeout(() => socket.destroy(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
    socket.on('connect', () => socket.write(Buffer.concat([u16(message.length), message])));
    socket.on('data', (d: Buffer) => {
      got = Buffer.concat([got, d]);
      if (got.length >= 2 && got.length >= 2 + got.readUInt16BE(0)) {
        clearTimeout(timer);
        socket.end();
        resolve(got.subarray(2, 2 + got.readUInt16BE(0)));
      }
    });
    socket.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    socket.on('close', () => {
      clearTimeout(timer);
      reject(new Error('the server closed the connection without an answer'));
    });
  });
}

/** Points `target.name` at `address` (its A or AAAA records replaced), signed with the target's key. */
export async function pointName(target: DnsUpdateTarget, address: string): Promise<void> {
  const where = `${target.name} at ${target.server}:${target.port ?? 53}`;
  const id = randomInt(0, 0x10000);
  const { signed, mac: requestMac } = signMessage(updateMessage(id, target.zone, target.name, target.ttl, address), target.key);
  let answer: Buffer;
  try {
    answer = await exchange(target.server, target.port ?? 53, signed, target.timeoutMs ?? 5000);
  } catch (e) {
    throw new DnsUpdateError(where, 'UNREACHABLE', (e as Error).message);
  }
  let parsed: Answer;
  try {
    parsed = parseAnswer(answer);
  } catch (e) {
    throw new DnsUpdateError(where, 'FORMERR', `unreadable answer: ${(e as Error).message}`);
  }
  if (parsed.id !== id) throw new DnsUpdateError(where, 'FORMERR', 'the answer is to another request');
  if (parsed.tsig && parsed.tsig.error !== 0) throw new DnsUpdateError(where, RCODES[parsed.tsig.error] ?? `TSIG error ${parsed.tsig.error}`, `the server refused the signature of key ${target.key.name}`);
  if (parsed.rcode !== 0) throw new DnsUpdateError(where, RCODES[parsed.rcode] ?? `rcode ${parsed.rcode}`, 'the server refused the update');
  if (!answerSigned(answer, parsed, target.key, requestMac)) throw new DnsUpdateError(where, 'BADSIG', `the answer is not signed with key ${target.key.name}`);
}
