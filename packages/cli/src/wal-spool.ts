/**
 * restore_command's common case: the segment or history file PostgreSQL asks
 * for is in the spool already — fetched, checked against its SHA-256 and
 * written durably by the prefetcher (`coffer wal-prefetch`) — and `wal-fetch`
 * only has to move it into place. The entry point
 * (bin/coffer.js) does that from here before loading the bundle: a rename,
 * the note of where recovery stands (which the prefetcher follows), and a
 * prefetcher started when none runs. Anything else (nothing spooled,
 * options it does not know) runs the full program, which asks the store. This module
 * imports only Node's own.
 */
import { spawn } from 'node:child_process';
import { access, copyFile, open, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';

const SEGMENT = /^[0-9A-F]{24}$/;
const HISTORY = /^[0-9A-F]{8}\.history$/;
/** As the engine names them (postgres/wal.ts). */
const WANTED = '.wanted';
const PREFETCH_LOCK = '.prefetch.lock';
const TMP_SUFFIX = '.coffer-tmp';
/** How long a call waits for the prefetcher to spool its segment before fetching it itself. */
const PREFETCH_WAIT_MS = 10_000;

interface WalFetchCall {
  name: string;
  dest: string;
  spool: string;
  globalArgs: string[];
  prefetch: number;
  queueMax: number;
  systemId?: string;
}

/** What a plain `wal-fetch` command line says; undefined for any other form. */
export function walFetchCall(argv: readonly string[], cwd: string): WalFetchCall | undefined {
  const at = argv.indexOf('wal-fetch');
  if (at < 0 || argv.slice(0, at).some((a) => a.startsWith('--metrics-textfile'))) return undefined;
  const positional: string[] = [];
  const o: Record<string, string> = {};
  for (let i = at + 1; i < argv.length; i++) {
    const a = argv[i]!;
    if (!a.startsWith('-')) {
      positional.push(a);
      continue;
    }
    const eq = a.indexOf('=');
    const [flag, value] = eq > 0 ? [a.slice(0, eq), a.slice(eq + 1)] : [a, argv[++i]];
    if (!['--prefetch', '--queue-max', '--spool', '--system-id'].includes(flag) || value === undefined) return undefined;
    o[flag] = value;
  }
  if (positional.length !== 2 || !(SEGMENT.test(positional[0]!) || HISTORY.test(positional[0]!))) return undefined;
  const [name, destArg] = positional as [string, string];
  const dest = resolve(cwd, destArg);
  const prefetch = Number(o['--prefetch'] ?? 2);
  const queueMax = Number(o['--queue-max'] ?? 128);
  if (!Number.isInteger(prefetch) || !Number.isInteger(queueMax) || prefetch < 0 || queueMax < 1) return undefined;
  return {
    name,
    dest,
    spool: o['--spool'] !== undefined ? resolve(cwd, o['--spool']) : join(dirname(dest), '.coffer-spool'),
    globalArgs: argv.slice(0, at),
    prefetch,
    queueMax,
    ...(o['--system-id'] !== undefined ? { systemId: o['--system-id'] } : {}),
  };
}

/** `served`: the file `argv` asks for was in the spool and is now at its destination; undefined: the full program runs. */
export async function serveFromSpool(argv: readonly string[], env: NodeJS.ProcessEnv, cwd: string): Promise<'served' | undefined> {
  try {
    const call = walFetchCall(argv, cwd);
    if (!call) return undefined;
    const spooled = join(call.spool, call.name);
    let fh = await open(spooled, 'r').catch(() => undefined);
    // Not spooled yet, but a prefetcher is at work and recovery moves forward on its timeline: the prefetcher,
    // which follows it, is fetching this segment or about to, so wait for it rather than fetch it a second time —
    // while it lives, and at most a while. (A segment asked for again, or on another timeline, is fetched now.)
    const before = fh ? undefined : await readFile(join(call.spool, WANTED), 'utf8').catch(() => undefined);
    if (!fh && call.prefetch > 0 && SEGMENT.test(call.name) && before !== undefined && before.slice(0, 8) === call.name.slice(0, 8) && call.name > before.trim()) {
      await writeFile(join(call.spool, WANTED), call.name).catch(() => undefined);
      const end = Date.now() + PREFETCH_WAIT_MS;
      let checked = 0;
      while (!fh && Date.now() < end) {
        if (Date.now() - checked >= 100) {
          checked = Date.now();
          if (!(await prefetcherAlive(call.spool))) break;
        }
        await new Promise((r) => setTimeout(r, 2));
        fh = await open(spooled, 'r').catch(() => undefined);
        // The prefetcher could not fetch it, or found it not archived: the program asks the store now.
        if (!fh && ((await exists(join(call.spool, `.${call.name}.failed`))) || (await exists(join(call.spool, `.${call.name}.absent`))))) return undefined;
      }
    }
    if (!fh) return undefined;
    const size = (await fh.stat().finally(() => fh.close())).size;
    // The archive's last segment (the prefetcher's keep note): recovery asks for it once more as it ends.
    if (await exists(join(call.spool, `.${call.name}.keep`))) await copyFile(spooled, call.dest);
    else await rename(spooled, call.dest);
    if (!SEGMENT.test(call.name)) return 'served';
    await writeFile(join(call.spool, WANTED), call.name).catch(() => undefined);
    await clearStale(call.spool, call.name);
    if (call.prefetch > 0) await startPrefetcher(call, size, env, cwd);
    return 'served';
  } catch {
    return undefined;
  }
}

const exists = (path: string): Promise<boolean> => access(path).then(
  () => true,
  () => false,
);

/** Spooled segments before `name` on its timeline will not be asked for again. */
async function clearStale(spool: string, name: string): Promise<void> {
  for (const n of await readdir(spool).catch(() => [] as string[])) {
    // A temporary file is of the segment its name begins with: one of a later segment is a live prefetcher's
    // write in flight, and removing it would fail that fetch.
    const of = n.endsWith(TMP_SUFFIX) ? n.slice(1).split('.')[0]! : n;
    if (SEGMENT.test(of) && of.slice(0, 8) === name.slice(0, 8) && of < name) await rm(join(spool, n), { force: true });
  }
}

/** Whether a prefetcher holds the spool (its lock names a live process). */
async function prefetcherAlive(spool: string): Promise<boolean> {
  const lock = await readFile(join(spool, PREFETCH_LOCK), 'utf8').catch(() => undefined);
  return lock !== undefined && alive(Number(lock.split('\n')[0]));
}

async function startPrefetcher(call: WalFetchCall, segmentBytes: number, env: NodeJS.ProcessEnv, cwd: string): Promise<void> {
  if (await prefetcherAlive(call.spool)) return;
  const systemId = call.systemId ?? (await controlSystemIdentifier(cwd));
  if (systemId === undefined) return;
  const args = [process.argv[1]!, ...call.globalArgs, 'wal-prefetch', '--spool', call.spool, '--system-id', systemId, '--parallel', String(call.prefetch), '--queue-max', String(call.queueMax), '--segment-bytes', String(segmentBytes), nextSegment(call.name, segmentBytes)];
  const child = spawn(process.execPath, args, { detached: true, stdio: 'ignore', cwd, env });
  child.on('error', () => undefined);
  child.unref();
}

function alive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** The first field of global/pg_control in data directory `pgdata`: the cluster's system identifier. */
export async function controlSystemIdentifier(pgdata: string): Promise<string | undefined> {
  const fh = await open(join(pgdata, 'global', 'pg_control'), 'r').catch(() => undefined);
  if (!fh) return undefined;
  try {
    const buf = Buffer.alloc(8);
    const { bytesRead } = await fh.read(buf, 0, 8, 0);
    return bytesRead === 8 ? buf.readBigUInt64LE(0).toString() : undefined;
  } finally {
    await fh.close();
  }
}

/** The segment after `name` for this segment size (as the engine's layout computes it). */
function nextSegment(name: string, segmentBytes: number): string {
  const perLog = Math.floor(0x100000000 / segmentBytes);
  const log = parseInt(name.slice(8, 16), 16);
  const seg = parseInt(name.slice(16, 24), 16) + 1;
  const [nlog, nseg] = seg >= perLog ? [log + 1, 0] : [log, seg];
  return name.slice(0, 8) + nlog.toString(16).toUpperCase().padStart(8, '0') + nseg.toString(16).toUpperCase().padStart(8, '0');
}
