/**
 * WAL for a sandbox that cannot reach the repository. The sandbox server
 * lives in a network namespace of its own and holds no repository
 * credentials; its `restore_command` asks this process, over a Unix socket in
 * the sandbox directory, for each file. This process fetches from the
 * repository (checking every segment's SHA-256, as `wal-fetch` does), reads a
 * few segments ahead while the server replays, and remembers the first
 * failure so the report can name the object at fault.
 *
 * HTTP on the socket: `GET /<WAL file name>` → 200 with the bytes, 404 when
 * the file is not archived, 500 with the reason otherwise.
 */
import { createServer, get, type Server } from 'node:http';
import { chmod, rename, rm, writeFile } from 'node:fs/promises';
import { fetchWalBytes, segmentNumber, StoreUnavailableError, WAL_FILE, WAL_SEGMENT, segmentsAfter, type Repository, type WalScope } from '@coffer/engine';

export interface WalServeStats {
  /** Files served, and bytes. */
  files: number;
  bytes: number;
  /** Names asked for that the repository does not hold (the end of the archive, probes for later timelines), or that lie past the horizon. */
  absent: string[];
  /** The first fetch that failed, with its reason. */
  failure?: string;
}

/** At most this many bytes of segments read ahead (whole segments; at least one). */
const READ_AHEAD_BYTES = 256 * 1024 * 1024;

export interface WalServeOptions {
  /**
   * The newest segment to serve: segments past its position, on any timeline, are answered as not archived.
   * A source that keeps archiving would otherwise keep a sandbox recovering "to the end of the archive" for as
   * long as it replays slower than the source writes: the end is the one the run began with.
   */
  through?: string;
}

export class WalSocketServer {
  readonly path: string;
  readonly stats: WalServeStats = { files: 0, bytes: 0, absent: [] };
  private readonly server: Server;
  private readonly ahead = new Map<string, Promise<Buffer | undefined>>();
  /** The `through` segment's number (its position, timeline aside). */
  private readonly horizon: bigint | undefined;

  private constructor(path: string, server: Server, horizon: bigint | undefined) {
    this.path = path;
    this.server = server;
    this.horizon = horizon;
  }

  /** Listens on `path` (a new socket file the server user may connect to). */
  static async listen(repo: Repository, scope: WalScope, path: string, segmentBytes: number, options: WalServeOptions = {}): Promise<WalSocketServer> {
    let self: WalSocketServer | undefined;
    const server = createServer((req, res) => {
      void self!.answer(repo, scope, segmentBytes, req.url ?? '', (status, body) => {
        res.writeHead(status, { 'content-length': body.length, 'content-type': status === 200 ? 'application/octet-stream' : 'text/plain; charset=utf-8' });
        res.end(body);
      });
    });
    self = new WalSocketServer(path, server, options.through === undefined ? undefined : segmentNumber(options.through, segmentBytes));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(path, () => resolve());
    });
    // The sandbox server runs as another user: a socket is connected to by writing it.
    await chmod(path, 0o666);
    return self;
  }

  private async answer(repo: Repository, scope: WalScope, segmentBytes: number, url: string, reply: (status: number, body: Buffer) => void): Promise<void> {
    const name = decodeURIComponent(url.replace(/^\//, ''));
    if (!WAL_FILE.test(name)) return reply(400, Buffer.from(`not a WAL file name: ${name}`));
    if (this.pastHorizon(name, segmentBytes)) {
      this.stats.absent.push(name);
      return reply(404, Buffer.from(`${name} was archived after this run began`));
    }
    try {
      const pending = this.ahead.get(name) ?? fetchWalBytes(repo, scope, name);
      this.ahead.delete(name);
      const bytes = await pending;
      if (!bytes) {
        this.stats.absent.push(name);
        return reply(404, Buffer.from(`${name} is not archived`));
      }
      this.stats.files++;
      this.stats.bytes += bytes.length;
      if (WAL_SEGMENT.test(name)) this.readAhead(repo, scope, name, segmentBytes);
      reply(200, bytes);
    } catch (e) {
      const reason = `${name}: ${(e as Error).message}`;
      this.stats.failure ??= reason;
      reply(500, Buffer.from(reason));
    }
  }

  /** Starts fetching the segments after `name` that are not on their way yet; a failure there is reported when that segment is asked for. */
  private readAhead(repo: Repository, scope: WalScope, name: string, segmentBytes: number): void {
    const count = Math.max(1, Math.min(8, Math.floor(READ_AHEAD_BYTES / segmentBytes)));
    for (const next of segmentsAfter(name, count, segmentBytes)) {
      if (this.pastHorizon(next, segmentBytes)) break;
      if (this.ahead.has(next)) continue;
      const p = fetchWalBytes(repo, scope, next);
      p.catch(() => undefined);
      this.ahead.set(next, p);
    }
    // Never more than the window: drop what recovery skipped past (a timeline switch).
    while (this.ahead.size > count) this.ahead.delete(this.ahead.keys().next().value!);
  }

  private pastHorizon(name: string, segmentBytes: number): boolean {
    return this.horizon !== undefined && WAL_SEGMENT.test(name) && segmentNumber(name, segmentBytes) > this.horizon;
  }

  async close(): Promise<void> {
    this.ahead.clear();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.server.closeAllConnections();
    await rm(this.path, { force: true });
  }
}

/**
 * The sandbox's restore_command side: asks the socket for `name` and writes
 * it to `dest`. 'absent' when the repository does not hold it; throws with
 * the server's reason otherwise.
 */
export function fetchWalViaSocket(socketPath: string, name: string, dest: string): Promise<'fetched' | 'absent'> {
  return new Promise((resolve, reject) => {
    const req = get({ socketPath, path: `/${encodeURIComponent(name)}` }, (res) => {
      const parts: Buffer[] = [];
      res.on('data', (d: Buffer) => parts.push(d));
      res.on('error', reject);
      res.on('end', () => {
        const body = Buffer.concat(parts);
        if (res.statusCode === 404) return resolve('absent');
        if (res.statusCode !== 200) return reject(new StoreUnavailableError(name, body.toString('utf8') || `the verify process answered ${res.statusCode}`));
        const tmp = `${dest}.coffer-tmp`;
        writeFile(tmp, body)
          .then(() => rename(tmp, dest))
          .then(() => resolve('fetched'), reject);
      });
    });
    req.on('error', reject);
  });
}
