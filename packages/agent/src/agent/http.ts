/**
 * The agent's HTTP endpoints: /metrics (Prometheus's text format), /healthz
 * (the process answers), /readyz (started and not stopping: a Kubernetes
 * readiness probe), /status (what `coffer status --json` prints). Nothing
 * else is served, and nothing is accepted but GET and HEAD.
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { splitHostPort } from '@coffer/engine';

export interface AgentEndpoints {
  metrics: () => Promise<string>;
  contentType: string;
  ready: () => boolean;
  status: () => unknown;
}

export interface AgentServer {
  /** host:port actually bound (a port of 0 in the policy picks a free one). */
  address: string;
  close: () => Promise<void>;
}

export async function serveAgent(listen: string, endpoints: AgentEndpoints): Promise<AgentServer> {
  const split = splitHostPort(listen);
  // An address without a host (`:9187`) serves this host only, not every interface.
  const host = split.host || '127.0.0.1';
  const port = split.port;
  const server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    const send = (status: number, type: string, body: string) => {
      res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store' });
      res.end(req.method === 'HEAD' ? undefined : body);
    };
    if (req.method !== 'GET' && req.method !== 'HEAD') return send(405, 'text/plain', 'only GET and HEAD\n');
    if (path === '/metrics') {
      endpoints.metrics().then(
        (text) => send(200, endpoints.contentType, text),
        (e: Error) => send(500, 'text/plain', `metrics failed: ${e.message}\n`),
      );
      return;
    }
    if (path === '/healthz') return send(200, 'text/plain', 'ok\n');
    if (path === '/readyz') return endpoints.ready() ? send(200, 'text/plain', 'ready\n') : send(503, 'text/plain', 'not ready\n');
    if (path === '/status') return send(200, 'application/json', JSON.stringify(endpoints.status(), null, 1) + '\n');
    send(404, 'text/plain', 'not found: /metrics, /healthz, /readyz, /status\n');
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  const a = server.address() as AddressInfo;
  return {
    address: `${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
