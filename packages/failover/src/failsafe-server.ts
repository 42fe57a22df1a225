/**
 * The observer's failsafe endpoint: plain HTTP on the address the policy
 * gives each observer (`failover.failsafe.endpoints`), so a primary's guard
 * reaches it directly when the decision store is out of its reach.
 *
 * - `POST /v1/promise` `{cluster, epoch, node}` → `{granted: true, ms}` or
 *   `{granted: false, reason}`: see `failsafe-promises.ts`.
 * - `POST /v1/close` `{cluster, epoch}` → `{closed, remainingMs}`: no more
 *   promises on epochs up to `epoch` (kept on disk first), and how long
 *   those given last.
 * - `GET /v1/state` → `FailsafeState`: what it knows and has promised
 *   (`coffer failover status`).
 *
 * With a token configured every request must carry it
 * (`Authorization: Bearer …`, compared in constant time); it is never
 * logged or echoed.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createHash, timingSafeEqual } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { splitHostPort } from '@coffer/engine';
import type { FailsafePromises, ObserverView } from './failsafe-promises.js';

export interface FailsafeServerOptions {
  promises: FailsafePromises;
  cluster: string;
  /** What the observer knows now (read at each request). */
  view: () => ObserverView;
  /** `host:port` to listen on. */
  listen: string;
  token?: string;
  onEvent?: (kind: 'promised' | 'refused' | 'closed', epoch: number, detail: string) => void;
}

/** Largest request body read. */
const MAX_BODY = 4096;

export class FailsafeServer {
  private constructor(
    private readonly server: Server,
    /** The address it listens on (the port chosen when the policy said 0). */
    readonly address: string,
  ) {}

  static async start(o: FailsafeServerOptions): Promise<FailsafeServer> {
    const { host, port } = splitHostPort(o.listen);
    const digest = (s: string) => createHash('sha256').update(s).digest();
    const token = o.token !== undefined ? digest(`Bearer ${o.token}`) : undefined;
    const server = createServer((req, res) => {
      void handle(req, res).catch((e: unknown) => answer(res, 500, { error: (e as Error).message }));
    });
    async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
      if (token && !timingSafeEqual(token, digest(req.headers.authorization ?? ''))) return answer(res, 401, { error: 'a failsafe request needs the token (Authorization: Bearer)' });
      if (req.method === 'GET' && req.url === '/v1/state') return answer(res, 200, o.promises.state(o.view()));
      if (req.method !== 'POST' || (req.url !== '/v1/promise' && req.url !== '/v1/close')) return answer(res, 404, { error: 'POST /v1/promise or /v1/close, GET /v1/state' });
      const body = await readJson(req);
      if (!body || body.cluster !== o.cluster || !Number.isInteger(body.epoch) || (body.epoch as number) < 1) return answer(res, 400, { error: `expected {cluster: ${JSON.stringify(o.cluster)}, epoch (a positive integer)${req.url === '/v1/promise' ? ', node' : ''}}` });
      const epoch = body.epoch as number;
      if (req.url === '/v1/close') {
        const remainingMs = await o.promises.close(epoch);
        o.onEvent?.('closed', epoch, `closed epochs up to ${epoch}; promises given on them last ${Math.ceil(remainingMs)} ms more`);
        return answer(res, 200, { closed: o.promises.closed, remainingMs });
      }
      if (typeof body.node !== 'string') return answer(res, 400, { error: 'expected node (a string)' });
      const a = o.promises.ask(epoch, body.node, o.view());
      if (a.granted) o.onEvent?.('promised', epoch, `to ${body.node} for ${a.ms} ms`);
      else o.onEvent?.('refused', epoch, `${body.node}: ${a.reason}`);
      return answer(res, 200, a);
    }
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    const addr = server.address() as AddressInfo;
    return new FailsafeServer(server, `${addr.family === 'IPv6' ? `[${addr.address}]` : addr.address}:${addr.port}`);
  }

  async stop(): Promise<void> {
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.server.closeAllConnections();
  }
}

function answer(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), connection: 'close' });
  res.end(text);
}

async function readJson(req: IncomingMessage): Promise<Record<string, unknown> | undefined> {
  const parts: Buffer[] = [];
  let size = 0;
  for await (const c of req as AsyncIterable<Buffer>) {
    size += c.length;
    if (size > MAX_BODY) return undefined;
    parts.push(c);
  }
  try {
    const v: unknown = JSON.parse(Buffer.concat(parts).toString('utf8'));
    return v && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}
