/**
 * A TCP proxy that can be cut: in front of a PostgreSQL server, it stands for
 * the network between the server and whoever connects through it. `cut()`
 * drops every connection and refuses new ones (a partition); `heal()` lets
 * them through again.
 */
import { createServer, connect, type Server, type Socket } from 'node:net';

export class TcpProxy {
  private readonly sockets = new Set<Socket>();
  private cutOff = false;
  port = 0;

  private constructor(private readonly server: Server) {}

  static async start(targetHost: string, targetPort: number, listenHost = '127.0.0.1'): Promise<TcpProxy> {
    let proxy!: TcpProxy;
    const server = createServer((client) => {
      if (proxy.cutOff) return void client.destroy();
      const upstream = connect({ host: targetHost, port: targetPort });
      for (const s of [client, upstream]) {
        proxy.sockets.add(s);
        s.on('close', () => proxy.sockets.delete(s));
        s.on('error', () => undefined);
      }
      client.pipe(upstream).pipe(client);
      client.on('close', () => upstream.destroy());
      upstream.on('close', () => client.destroy());
    });
    proxy = new TcpProxy(server);
    await new Promise<void>((resolve) => server.listen(0, listenHost, resolve));
    proxy.port = (server.address() as { port: number }).port;
    return proxy;
  }

  /** Drops every connection and refuses new ones. */
  cut(): void {
    this.cutOff = true;
    for (const s of this.sockets) s.destroy();
  }

  heal(): void {
    this.cutOff = false;
  }

  async stop(): Promise<void> {
    this.cut();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
