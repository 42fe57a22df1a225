/**
 * A fault-injecting HTTP proxy for the S3 tests: clients talk to it as their
 * S3 endpoint, and it forwards to the real server (Host header untouched, so
 * SigV4 signatures still verify) — except for the requests it chooses to
 * break, at `failureRate`, in one of these ways:
 *
 * - `error-before`: 500 InternalError without forwarding;
 * - `error-after`: forwarded and done by the server, but answered 500 (a lost
 *   acknowledgement: the client retries something that already happened);
 * - `slowdown`: 503 SlowDown, as S3 throttles;
 * - `reset-response`: forwarded; the status, headers and half the body are
 *   sent, then the connection is reset;
 * - `reset-request`: the connection is reset before anything is forwarded;
 * - `slow`: forwarded after `slowMs`;
 * - `corrupt-body`: one byte of the request body flipped on the way (the
 *   server must refuse it by its checksum);
 * - `corrupt-response` (opt-in): one byte of a successful response's body
 *   flipped on the way back (the client must notice: names, tags, checksums);
 * - `duplicate` (opt-in): the request delivered twice, the second answer
 *   returned (a retried create finds its own object there).
 *
 * `down` makes it refuse every connection, as a store that is gone for good.
 */
import { randomInt } from 'node:crypto';
import { createServer, request, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';

export type Fault = 'error-before' | 'error-after' | 'slowdown' | 'reset-response' | 'reset-request' | 'slow' | 'corrupt-body' | 'corrupt-response' | 'duplicate';

/** The faults a command must ride out (retries make it complete). */
export const ALL_FAULTS: readonly Fault[] = ['error-before', 'error-after', 'slowdown', 'reset-response', 'reset-request', 'slow', 'corrupt-body'];
/** Faults a command may also fail on — with a typed error, never with damage. */
export const HARSH_FAULTS: readonly Fault[] = ['corrupt-response', 'duplicate'];

export interface FaultProxyOptions {
  failureRate?: number;
  faults?: readonly Fault[];
  slowMs?: number;
  /** Only break requests this predicate accepts (default: all). */
  only?: (req: IncomingMessage) => boolean;
}

export class FaultProxy {
  readonly target: URL;
  failureRate: number;
  faults: readonly Fault[];
  slowMs: number;
  only: ((req: IncomingMessage) => boolean) | undefined;
  /** Requests seen, and faults injected by kind. */
  readonly counts: { requests: number; forwarded: number } & Partial<Record<Fault, number>> = { requests: 0, forwarded: 0 };
  /** Status codes the real server answered with. */
  readonly upstreamStatuses: Record<number, number> = {};
  private readonly server: Server;
  private readonly sockets = new Set<Socket>();
  private downState = false;
  endpoint = '';

  private constructor(target: string, options: FaultProxyOptions) {
    this.target = new URL(target);
    this.failureRate = options.failureRate ?? 0;
    this.faults = options.faults ?? ALL_FAULTS;
    this.slowMs = options.slowMs ?? 1500;
    this.only = options.only;
    this.server = createServer((req, res) => void this.handle(req, res));
    this.server.on('connection', (s: Socket) => {
      if (this.downState) {
        s.destroy();
        return;
      }
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
    });
  }

  static async start(target: string, options: FaultProxyOptions = {}): Promise<FaultProxy> {
    const p = new FaultProxy(target, options);
    await new Promise<void>((resolve) => p.server.listen(0, '127.0.0.1', resolve));
    p.endpoint = `http://127.0.0.1:${(p.server.address() as { port: number }).port}`;
    return p;
  }

  /** Down: every open and new connection is cut. Up again: requests flow. */
  set down(value: boolean) {
    this.downState = value;
    if (value) for (const s of this.sockets) s.destroy();
  }

  get down(): boolean {
    return this.downState;
  }

  get injected(): number {
    return [...ALL_FAULTS, ...HARSH_FAULTS].reduce((n, f) => n + (this.counts[f] ?? 0), 0);
  }

  async stop(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private pick(req: IncomingMessage): Fault | undefined {
    if (this.failureRate <= 0 || (this.only && !this.only(req))) return undefined;
    if (Math.random() >= this.failureRate) return undefined;
    const candidates = this.faults.filter((f) => f !== 'corrupt-body' || Number(req.headers['content-length'] ?? 0) > 0);
    if (candidates.length === 0) return undefined;
    return candidates[randomInt(candidates.length)];
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    this.counts.requests++;
    const chunks: Buffer[] = [];
    try {
      for await (const c of req) chunks.push(c as Buffer);
    } catch {
      return;
    }
    let body = Buffer.concat(chunks);
    const fault = this.pick(req);
    if (fault) this.counts[fault] = (this.counts[fault] ?? 0) + 1;
    switch (fault) {
      case 'error-before':
        return s3Error(res, 500, 'InternalError', 'injected fault');
      case 'slowdown':
        return s3Error(res, 503, 'SlowDown', 'Please reduce your request rate.');
      case 'reset-request':
        req.socket.destroy();
        return;
      case 'slow':
        await new Promise((r) => setTimeout(r, this.slowMs));
        break;
      case 'corrupt-body': {
        body = Buffer.from(body);
        const i = randomInt(body.length);
        body[i] = body[i]! ^ 0x5a;
        break;
      }
    }
    let upstream: { status: number; headers: IncomingMessage['headers']; body: Buffer };
    try {
      upstream = await this.forward(req, body);
      if (fault === 'duplicate') upstream = await this.forward(req, body);
    } catch {
      req.socket.destroy();
      return;
    }
    this.counts.forwarded++;
    this.upstreamStatuses[upstream.status] = (this.upstreamStatuses[upstream.status] ?? 0) + 1;
    if (fault === 'error-after') return s3Error(res, 500, 'InternalError', 'injected fault after the request was carried out');
    if (fault === 'reset-response' && upstream.body.length > 1) {
      res.writeHead(upstream.status, upstream.headers);
      res.write(upstream.body.subarray(0, upstream.body.length >> 1), () => req.socket.destroy());
      return;
    }
    if (fault === 'corrupt-response' && upstream.status < 300 && upstream.body.length > 0) {
      const damaged = Buffer.from(upstream.body);
      const i = randomInt(damaged.length);
      damaged[i] = damaged[i]! ^ 0x5a;
      upstream = { ...upstream, body: damaged };
    }
    res.writeHead(upstream.status, upstream.headers);
    res.end(upstream.body);
  }

  private forward(req: IncomingMessage, body: Buffer): Promise<{ status: number; headers: IncomingMessage['headers']; body: Buffer }> {
    return new Promise((resolve, reject) => {
      const up = request({ host: this.target.hostname, port: this.target.port, method: req.method, path: req.url, headers: req.headers }, (r) => {
        const parts: Buffer[] = [];
        r.on('data', (d: Buffer) => parts.push(d));
        r.on('end', () => resolve({ status: r.statusCode ?? 502, headers: r.headers, body: Buffer.concat(parts) }));
        r.on('error', reject);
      });
      up.on('error', reject);
      up.end(body);
    });
  }
}

function s3Error(res: ServerResponse, status: number, code: string, message: string): void {
  const xml = `<?xml version="1.0" encoding="UTF-8"?><Error><Code>${code}</Code><Message>${message}</Message><RequestId>fault-proxy</RequestId></Error>`;
  res.writeHead(status, { 'content-type': 'application/xml', 'content-length': Buffer.byteLength(xml) });
  res.end(xml);
}
