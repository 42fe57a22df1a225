/**
 * Acknowledgements that let `wal-push` answer PostgreSQL without opening the
 * repository. A push archives the other `.ready` files ahead of PostgreSQL's
 * calls; for each it finds durable in the repository it leaves a note in
 * `pg_wal/.coffer-ack/<name>`: the file's SHA-256, the system identifier of
 * the cluster that wrote it, and a digest of the command line and the
 * environment that chose the repository and stanza. When PostgreSQL then
 * calls `coffer wal-push` for that file, the entry point (bin/coffer.js)
 * confirms it from the note — hashing the file again, reading its header —
 * and exits 0 without loading the engine, the AWS SDK or a key: a process
 * start and a hash instead of a repository opened.
 *
 * A note confirms nothing else: another file under that name (other bytes),
 * another cluster's (another system identifier), another repository or
 * stanza (another command line or environment), or a note older than an hour
 * (retention never removes WAL that young, so what it says is still true) is
 * passed over, and the full program archives the file as always. A note is
 * used once and removed. This module imports only Node's own.
 */
import { createHash } from 'node:crypto';
import { mkdir, open, readdir, readFile, rename, stat, unlink, writeFile } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';

/** How long a note may confirm its file. */
export const ACK_TTL_MS = 3_600_000;
const SEGMENT = /^[0-9A-F]{24}$/;
/** What else chooses the repository, the stanza and the store a run writes to. */
const ENV = ['COFFER_REPO', 'COFFER_STANZA', 'COFFER_REPOSITORY_ID', 'AWS_ENDPOINT_URL', 'AWS_ENDPOINT_URL_S3', 'AWS_REGION', 'AWS_DEFAULT_REGION'] as const;
/** Set when a run must leave its own record (metrics, the agent's run record): no shortcut then. */
const RECORDING = ['COFFER_METRICS_TEXTFILE', 'COFFER_RUN_RECORD'] as const;

export interface WalAck {
  v: 1;
  identity: string;
  name: string;
  sha256: string;
  systemIdentifier: string;
  at: number;
}

/**
 * The segment a `wal-push` command line asks for, and a digest of everything
 * else that chose where it goes; undefined unless the line is the plain form
 * (`[options] wal-push [--ahead N] <path>`, no metrics file).
 */
export function walPushCall(argv: readonly string[], env: NodeJS.ProcessEnv, cwd: string): { path: string; identity: string } | undefined {
  const at = argv.indexOf('wal-push');
  if (at < 0 || RECORDING.some((k) => env[k]) || argv.slice(0, at).some((a) => a.startsWith('--metrics-textfile'))) return undefined;
  let path: string | undefined;
  for (let i = at + 1; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--ahead') i++;
    else if (a.startsWith('--ahead=')) continue;
    else if (a.startsWith('-') || path !== undefined) return undefined;
    else path = a;
  }
  if (path === undefined || !SEGMENT.test(basename(path))) return undefined;
  const identity = createHash('sha256')
    .update(JSON.stringify([argv.slice(0, at), ENV.map((k) => env[k] ?? null), cwd]))
    .digest('hex');
  return { path: resolve(cwd, path), identity };
}

const ackDir = (walFile: string) => join(dirname(walFile), '.coffer-ack');

/** Leaves a note for a file found durable (written beside, flushed, renamed: never half a note). */
export async function writeWalAck(walFile: string, ack: Omit<WalAck, 'v' | 'at'>): Promise<void> {
  const dir = ackDir(walFile);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const path = join(dir, ack.name);
  const tmp = `${path}.tmp-${process.pid}`;
  await writeFile(tmp, JSON.stringify({ v: 1, ...ack, at: Date.now() } satisfies WalAck), { mode: 0o600 });
  const h = await open(tmp, 'r');
  try {
    await h.sync();
  } finally {
    await h.close();
  }
  await rename(tmp, path);
}

/** Removes the note for `walFile`, if any: the full program archived it itself. */
export async function dropWalAck(walFile: string): Promise<void> {
  await unlink(join(ackDir(walFile), basename(walFile))).catch(() => undefined);
}

/** Removes notes past their time (files PostgreSQL archived another way, or recycled). */
export async function pruneWalAcks(walFile: string, now = Date.now()): Promise<void> {
  const dir = ackDir(walFile);
  for (const n of await readdir(dir).catch(() => [] as string[])) {
    const s = await stat(join(dir, n)).catch(() => undefined);
    if (s && now - s.mtimeMs > ACK_TTL_MS) await unlink(join(dir, n)).catch(() => undefined);
  }
}

/**
 * True when a note confirms the file `argv` asks to push: then it is durable
 * in the repository that command line names, and the note is removed. False
 * (the full program runs) in every other case, errors included.
 */
export async function confirmFromAck(argv: readonly string[], env: NodeJS.ProcessEnv, cwd: string, now = Date.now()): Promise<boolean> {
  try {
    const call = walPushCall(argv, env, cwd);
    if (!call) return false;
    const name = basename(call.path);
    const notePath = join(ackDir(call.path), name);
    const note = JSON.parse(await readFile(notePath, 'utf8')) as Partial<WalAck>;
    if (note.v !== 1 || note.name !== name || note.identity !== call.identity || typeof note.at !== 'number' || now - note.at > ACK_TTL_MS || now < note.at) return false;
    const bytes = await readFile(call.path);
    // The long page header: xlp_sysid at 24 (little-endian u64).
    if (bytes.length < 40 || bytes.readBigUInt64LE(24).toString() !== note.systemIdentifier) return false;
    if (createHash('sha256').update(bytes).digest('hex') !== note.sha256) return false;
    await unlink(notePath);
    return true;
  } catch {
    return false;
  }
}
