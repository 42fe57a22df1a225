/**
 * Acknowledgements that let `wal-push` answer PostgreSQL without opening the
 * repository. A push archives the other `.ready` files ahead of PostgreSQL's
 * calls; for each it finds durable in the repository it leaves a note in
 * `pg_wal/.coffer-ack/<name>`: the file's SHA-256, the system identifier of
 * the cluster that wrote it, and a digest of the command line and the
 * environment that chose the repository and stanza. When PostgreSQL then
 * calls `coffer wal-push` for that file, the entry point (bin/coffer, a
 * shell script; on any doubt, bin/coffer.js before the bundle loads)
 * confirms it from the note — hashing the file again, reading its header —
 * and exits 0 without loading the engine, the AWS SDK or a key: a process
 * start and a hash instead of a repository opened.
 *
 * Notes come from two writers: a full `wal-push` run that archived other
 * `.ready` files ahead in the same call, and the background archiver
 * (`coffer wal-archiver`, started by the first full run) that archives each
 * file as soon as PostgreSQL marks it ready. While the archiver is alive
 * (its heartbeat file fresh, its process there), a call whose note is not
 * written yet waits for it instead of archiving the file a second time.
 *
 * A note confirms nothing else: another file under that name (other bytes),
 * another cluster's (another system identifier), another repository or
 * stanza (another command line or environment), or a note older than an hour
 * (retention never removes WAL that young, so what it says is still true) is
 * passed over, and the full program archives the file as always. A note is
 * used once and removed. "Same bytes" is proven by hashing the file again,
 * or — when the archiver saw the file unchanged while it read it — by the
 * file being the same file still: device, inode, size and modification and
 * change times to the nanosecond. No write to a file leaves its change time
 * as it was, and the name is the segment's: that is the SHA-256 the note
 * records, read again without reading 16 MiB again. This module imports
 * only Node's own.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { constants, existsSync } from 'node:fs';
import { mkdir, open, readdir, readFile, rename, stat, unlink, utimes, writeFile } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { controlSystemIdentifier } from './wal-spool.js';

/** How long a note may confirm its file. */
export const ACK_TTL_MS = 3_600_000;
const SEGMENT = /^[0-9A-F]{24}$/;
/**
 * Every file archive_command is called for: segments, and the history,
 * backup-label and partial files beside them. A call for any of them must
 * find the archiver (else it archives ahead itself, the same files at once).
 */
const WAL_FILE = /^([0-9A-F]{24}(\.partial|\.[0-9A-F]{8}\.backup)?|[0-9A-F]{8}\.history)$/;
/** What else chooses the repository, the stanza and the store a run writes to. */
const ENV = ['COFFER_REPO', 'COFFER_STANZA', 'COFFER_REPOSITORY_ID', 'AWS_ENDPOINT_URL', 'AWS_ENDPOINT_URL_S3', 'AWS_REGION', 'AWS_DEFAULT_REGION'] as const;
/** Set when a run must leave its own record (metrics, the agent's run record): no shortcut then. */
const RECORDING = ['COFFER_METRICS_TEXTFILE', 'COFFER_RUN_RECORD'] as const;

/** How long a call waits for the archiver's note before it archives the file itself. */
export const ARCHIVER_WAIT_MS = 60_000;
/** The archiver touches its heartbeat file this often; older than STALE, it is taken for gone. */
export const HEARTBEAT_MS = 1000;
const HEARTBEAT_STALE_MS = 5000;

/** The file a note was written for, as the archiver read it (see the module comment). */
export interface WalAckFile {
  dev: string;
  ino: string;
  size: number;
  mtimeNs: string;
  ctimeNs: string;
}

export interface WalAck {
  v: 1;
  identity: string;
  name: string;
  sha256: string;
  systemIdentifier: string;
  at: number;
  file?: WalAckFile;
}

/**
 * A digest of what chooses the repository, stanza and store: the options
 * before the command's name, the environment that matters, the working
 * directory. Each field ends with a NUL, which none can hold, so nothing is
 * escaped: bin/coffer (a shell script that confirms calls without starting
 * Node) makes the same digest with printf and sha256sum.
 */
export function commandIdentity(globalArgs: readonly string[], env: NodeJS.ProcessEnv, cwd: string): string {
  const fields = ['coffer-wal-push-identity', String(globalArgs.length), ...globalArgs, ...ENV.map((k) => (env[k] === undefined ? '-' : `=${env[k]}`)), cwd];
  return createHash('sha256')
    .update(fields.map((f) => `${f}\0`).join(''))
    .digest('hex');
}

/** What a plain `wal-push` command line says. */
export interface WalPushCall {
  /** The segment, as an absolute path. */
  path: string;
  /** A digest of what chose where it goes (`commandIdentity`). */
  identity: string;
  /** The options before `wal-push`: an archiver started for this call gets the same. */
  globalArgs: string[];
  ahead: number;
  archiverIdle: number;
}

/**
 * The segment a `wal-push` command line asks for, and a digest of everything
 * else that chose where it goes; undefined unless the line is the plain form
 * (`[options] wal-push [--ahead N] [--archiver-idle S] <path>`, no metrics file).
 */
export function walPushCall(argv: readonly string[], env: NodeJS.ProcessEnv, cwd: string): WalPushCall | undefined {
  const at = argv.indexOf('wal-push');
  if (at < 0 || RECORDING.some((k) => env[k]) || argv.slice(0, at).some((a) => a.startsWith('--metrics-textfile'))) return undefined;
  let path: string | undefined;
  const values: Record<string, number> = { '--ahead': 4, '--archiver-idle': 300 };
  for (let i = at + 1; i < argv.length; i++) {
    const a = argv[i]!;
    const eq = a.indexOf('=');
    const [flag, value] = eq > 0 ? [a.slice(0, eq), a.slice(eq + 1)] : [a, argv[i + 1]];
    if (flag in values) {
      if (eq < 0) i++;
      const n = Number(value);
      if (!Number.isInteger(n) || n < 0) return undefined;
      values[flag] = n;
    } else if (a.startsWith('-') || path !== undefined) return undefined;
    else path = a;
  }
  if (path === undefined || !WAL_FILE.test(basename(path))) return undefined;
  const globalArgs = argv.slice(0, at);
  return { path: resolve(cwd, path), identity: commandIdentity(globalArgs, env, cwd), globalArgs, ahead: values['--ahead']!, archiverIdle: values['--archiver-idle']! };
}

const ackDir = (walFile: string) => join(dirname(walFile), '.coffer-ack');
/** The archiver's heartbeat file for a pg_wal directory and command identity: its pid, touched every HEARTBEAT_MS. */
export const archiverFile = (walDir: string, identity: string) => join(walDir, '.coffer-ack', `archiver-${identity.slice(0, 16)}.pid`);
/** The name of the file PostgreSQL called `wal-push` for last (with this identity): the archiver stays within --ahead of it. */
export const callFile = (walDir: string, identity: string) => join(walDir, '.coffer-ack', `archiver-${identity.slice(0, 16)}.call`);
const errorNote = (walFile: string) => join(ackDir(walFile), `${basename(walFile)}.error`);

/** Leaves a note for a file found durable (written beside and renamed: never half a note), and wakes the calls waiting. */
export async function writeWalAck(walFile: string, ack: Omit<WalAck, 'v' | 'at'>): Promise<void> {
  const dir = ackDir(walFile);
  const path = join(dir, ack.name);
  const tmp = `${path}.tmp-${process.pid}`;
  const text = JSON.stringify({ v: 1, ...ack, at: Date.now() } satisfies WalAck);
  // Not synced: a note only tells of what is durable already. Lost in a crash, the call archives the file
  // again (the same bytes: success); torn, it fails every check and the program decides. Each step here is a
  // step the call waits for.
  await writeFile(tmp, text, { mode: 0o600 }).catch(async (e: NodeJS.ErrnoException) => {
    if (e.code !== 'ENOENT') throw e;
    await mkdir(dir, { recursive: true, mode: 0o700 });
    await writeFile(tmp, text, { mode: 0o600 });
  });
  // An earlier try's error note goes with it (a waiting call looks for the note first).
  await Promise.all([rename(tmp, path), unlink(errorNote(walFile)).catch(() => undefined)]);
  await wakeWaiters(dir);
}

/** Names of the pipes calls wait on in `.coffer-ack` (`wait-<pid>`). */
export const WAITER_PREFIX = 'wait-';

/**
 * A call waiting for a note (bin/coffer, the shell script) blocks reading a
 * pipe of its own, `.coffer-ack/wait-<pid>`, instead of polling: each note or
 * error note written wakes every waiter, which then looks for its own. The
 * pipe is opened without blocking: one that nobody reads any more (its call
 * was killed) is removed; a full one has a wake-up pending already.
 */
async function wakeWaiters(dir: string): Promise<void> {
  const names = await readdir(dir).catch(() => [] as string[]);
  for (const n of names) {
    if (!n.startsWith(WAITER_PREFIX)) continue;
    const path = join(dir, n);
    try {
      // Never through a link, and never into anything but a pipe.
      const h = await open(path, constants.O_WRONLY | constants.O_NONBLOCK | constants.O_NOFOLLOW);
      try {
        if ((await h.stat()).isFIFO()) await h.write('n\n');
      } catch {
        // Full (EAGAIN): a wake-up is pending already.
      } finally {
        await h.close();
      }
    } catch (e) {
      // No reader (ENXIO): its call is gone.
      if ((e as NodeJS.ErrnoException).code === 'ENXIO') await unlink(path).catch(() => undefined);
    }
  }
}

/** Removes the note for `walFile`, if any: the full program archived it itself. */
export async function dropWalAck(walFile: string): Promise<void> {
  await unlink(join(ackDir(walFile), basename(walFile))).catch(() => undefined);
}

/** Says why the archiver could not archive `walFile` (yet): a call waiting for it archives the file itself instead. */
export async function writeWalError(walFile: string, message: string): Promise<void> {
  await mkdir(ackDir(walFile), { recursive: true, mode: 0o700 });
  const path = errorNote(walFile);
  await writeFile(`${path}.tmp-${process.pid}`, JSON.stringify({ v: 1, message, at: Date.now() }), { mode: 0o600 });
  await rename(`${path}.tmp-${process.pid}`, path);
  await wakeWaiters(ackDir(walFile));
}

/** True when the archiver named by `path` runs: its heartbeat is recent and its process is there. */
export async function archiverAlive(path: string, now = Date.now()): Promise<boolean> {
  try {
    const [text, s] = await Promise.all([readFile(path, 'utf8'), stat(path)]);
    if (now - s.mtimeMs > HEARTBEAT_STALE_MS) return false;
    const pid = Number(text.split('\n')[0]);
    if (!Number.isInteger(pid) || pid <= 0) return false;
    // Where there is /proc, the process must be an archiver: not another that got the pid, not one killed and not
    // yet reaped (a zombie has no command line; in a container whose first process reaps late, that lasts).
    const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch((e: NodeJS.ErrnoException) => (e.code === 'ENOENT' && existsSync('/proc/self') ? '' : undefined));
    if (cmdline !== undefined) return cmdline.split('\0').includes('wal-archiver');
    try {
      process.kill(pid, 0);
      return true;
    } catch (e) {
      return (e as NodeJS.ErrnoException).code === 'EPERM';
    }
  } catch {
    return false;
  }
}

/**
 * Keeps an archiver's heartbeat file fresh until the returned function is
 * called (which removes it, if it is still this process's). When the file is
 * gone or names another process — its pg_wal was removed and made again, or
 * another archiver took over — `onLost` is called: two archivers on one
 * pg_wal would push the same files twice.
 */
export function heartbeat(path: string, onLost: () => void = () => undefined): () => Promise<void> {
  const timer = setInterval(() => {
    void (async () => {
      const owner = await readFile(path, 'utf8').then((t) => Number(t.split('\n')[0]), () => undefined);
      if (owner !== process.pid) return onLost();
      const t = new Date();
      await utimes(path, t, t).catch(() => undefined);
    })();
  }, HEARTBEAT_MS);
  timer.unref();
  return async () => {
    clearInterval(timer);
    const owner = await readFile(path, 'utf8').then((t) => Number(t.split('\n')[0]), () => undefined);
    if (owner === process.pid) await unlink(path).catch(() => undefined);
  };
}

/** Removes notes past their time (files PostgreSQL archived another way, or recycled). */
export async function pruneWalAcks(walFile: string, now = Date.now()): Promise<void> {
  const dir = ackDir(walFile);
  for (const n of await readdir(dir).catch(() => [] as string[])) {
    // Waiters' pipes are their calls' own (and a note's wake-up removes those nobody reads).
    if (n.startsWith('archiver-') || n.startsWith(WAITER_PREFIX)) continue;
    const s = await stat(join(dir, n)).catch(() => undefined);
    if (s && now - s.mtimeMs > ACK_TTL_MS) await unlink(join(dir, n)).catch(() => undefined);
  }
}

/**
 * True when a note confirms the file `argv` asks to push: then it is durable
 * in the repository that command line names, and the note is removed. With
 * no note yet but the archiver at work on the file, waits for its note (at
 * most ARCHIVER_WAIT_MS). False (the full program runs) in every other case:
 * the archiver gone or failing on the file, and errors of any kind.
 */
export async function confirmFromAck(argv: readonly string[], env: NodeJS.ProcessEnv, cwd: string, now?: number): Promise<boolean> {
  const began = Date.now();
  try {
    const call = walPushCall(argv, env, cwd);
    if (!call) return false;
    const name = basename(call.path);
    const notePath = join(ackDir(call.path), name);
    await noteCall(call);
    let text = await readFile(notePath, 'utf8').catch(() => undefined);
    if (text === undefined) text = await awaitArchiver(call, env, cwd);
    // Judged when it was read: the archiver may write it at any moment of this call (while the call noted
    // itself, say), and a note read a moment after it was written must not look like one from the future.
    // A `now` given (tests) moves on by what the call took.
    now = (now ?? began) + (Date.now() - began);
    if (text === undefined) return false;
    const note = JSON.parse(text) as Partial<WalAck>;
    if (note.v !== 1 || note.name !== name || note.identity !== call.identity || typeof note.at !== 'number' || now - note.at > ACK_TTL_MS || now < note.at) return false;
    if (!(note.file ? await sameFile(call.path, note.file, note.systemIdentifier) : await sameBytes(call.path, note.sha256, note.systemIdentifier))) return false;
    await unlink(notePath);
    return true;
  } catch {
    return false;
  }
}

/**
 * The archiver's note for the call's file once written — starting the
 * archiver first when none runs (and the call lets it: --ahead and
 * --archiver-idle not 0). Undefined when the file is not marked ready, the
 * archiver is gone or failed on the file, or it took too long.
 */
async function awaitArchiver(call: WalPushCall, env: NodeJS.ProcessEnv, cwd: string): Promise<string | undefined> {
  const walDir = dirname(call.path);
  const name = basename(call.path);
  const archiver = archiverFile(walDir, call.identity);
  if (!(await stat(join(walDir, 'archive_status', `${name}.ready`)).then(() => true, () => false))) return undefined;
  if (!(await archiverAlive(archiver)) && !(call.ahead > 0 && call.archiverIdle > 0 && (await startArchiver(call, env, cwd)))) return undefined;
  const notePath = join(ackDir(call.path), name);
  const deadline = Date.now() + ARCHIVER_WAIT_MS;
  let checked = Date.now();
  while (Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 2));
    const text = await readFile(notePath, 'utf8').catch(() => undefined);
    if (text !== undefined) return text;
    if (Date.now() - checked >= 200) {
      checked = Date.now();
      if (!(await archiverAlive(archiver))) return readFile(notePath, 'utf8').catch(() => undefined);
      if (await stat(errorNote(call.path)).then(() => true, () => false)) return undefined;
    }
  }
  return undefined;
}

/**
 * Starts `coffer wal-archiver` for the call's pg_wal, detached, with the
 * call's options and environment (so its notes are the ones calls read),
 * and writes its heartbeat file for it: the next call finds it running.
 */
async function startArchiver(call: WalPushCall, env: NodeJS.ProcessEnv, cwd: string): Promise<boolean> {
  const walDir = dirname(call.path);
  const beat = archiverFile(walDir, call.identity);
  await mkdir(dirname(beat), { recursive: true, mode: 0o700 });
  await unlink(beat).catch(() => undefined);
  const fh = await open(beat, 'wx', 0o600).catch(() => undefined);
  // Another call is starting one this moment.
  if (!fh) return archiverAlive(beat);
  try {
    const args = [process.argv[1]!, ...call.globalArgs, 'wal-archiver', walDir, '--parallel', String(Math.min(call.ahead, 2)), '--idle-exit', String(call.archiverIdle), '--ahead', String(call.ahead)];
    const child = spawn(process.execPath, args, { detached: true, stdio: 'ignore', cwd, env });
    child.on('error', () => undefined);
    child.unref();
    if (child.pid === undefined) return false;
    await fh.writeFile(`${child.pid}\n`);
    return true;
  } finally {
    await fh.close();
  }
}

/** Notes the file this call is for, where the archiver looks (see `callFile`); a call that leaves no archiver to it notes nothing. */
export async function noteCall(call: WalPushCall): Promise<void> {
  if (call.ahead === 0 || call.archiverIdle === 0) return;
  const walDir = dirname(call.path);
  const path = callFile(walDir, call.identity);
  await writeFile(`${path}.tmp-${process.pid}`, basename(call.path))
    .then(() => rename(`${path}.tmp-${process.pid}`, path))
    .catch(async () => {
      await mkdir(dirname(path), { recursive: true, mode: 0o700 }).catch(() => undefined);
      await writeFile(path, basename(call.path)).catch(() => undefined);
    });
}

/** The long page header's xlp_sysid (at 24, little-endian u64) names the cluster. */
function sysidOf(header: Buffer): string | undefined {
  return header.length >= 40 ? header.readBigUInt64LE(24).toString() : undefined;
}

/**
 * Whose file this is: a segment's page header says (a partial segment's
 * too); a history or backup-label file has no header, and it belongs to the
 * cluster whose pg_wal holds it (global/pg_control beside pg_wal).
 */
async function ownerOf(path: string, head: Buffer): Promise<string | undefined> {
  const name = basename(path);
  return SEGMENT.test(name) || name.endsWith('.partial') ? sysidOf(head) : controlSystemIdentifier(dirname(dirname(path)));
}

async function sameBytes(path: string, sha256: string | undefined, systemIdentifier: string | undefined): Promise<boolean> {
  const bytes = await readFile(path);
  return (await ownerOf(path, bytes)) === systemIdentifier && createHash('sha256').update(bytes).digest('hex') === sha256;
}

async function sameFile(path: string, file: WalAckFile, systemIdentifier: string | undefined): Promise<boolean> {
  const fh = await open(path, 'r');
  try {
    const s = await fh.stat({ bigint: true });
    if (s.dev.toString() !== file.dev || s.ino.toString() !== file.ino || Number(s.size) !== file.size || s.mtimeNs.toString() !== file.mtimeNs || s.ctimeNs.toString() !== file.ctimeNs) return false;
    const header = Buffer.alloc(40);
    const { bytesRead } = await fh.read(header, 0, 40, 0);
    return (await ownerOf(path, header.subarray(0, bytesRead))) === systemIdentifier;
  } finally {
    await fh.close();
  }
}
