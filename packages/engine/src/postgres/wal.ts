/**
 * The WAL archive. Each archived file (segment, timeline history, backup
 * history, partial segment) has one object `wal/<timeline>/<name>`:
 *
 *   "CWL1" ‖ SHA-256 of what follows ‖ sealed(JSON record)
 *
 * so its stored bytes are verifiable without keys, like every object. The
 * record names the file, its size and SHA-256, its chunk ids in order, and
 * where each chunk sits. Its chunks go into a pack of their own, written
 * first: a WAL file is archived once its record exists, never before its data
 * is durable. Records carry their own chunk locations, so archiving adds no
 * index objects and fetching reads no index.
 */
import { copyFile, mkdir, open, readdir, readFile, rename, rm, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { randomBytes } from 'node:crypto';
import pLimit from 'p-limit';
import { asBuffer, sha256Hex } from '../bytes.js';
import { chunkBuffer } from '../chunking/chunker.js';
import { CorruptObjectError, InvalidArgumentError, MissingObjectError, ObjectConflictError } from '../errors.js';
import { packKey } from '../format/keys-layout.js';
import type { PackEntry } from '../format/pack.js';
import type { Repository } from '../repository/repository.js';
import { collectList } from '../store/object-store.js';
import { sealedTrailer } from '../backup/pack-writer.js';
import { nextSegment, WAL_FILE, WAL_SEGMENT } from './layout.js';

export const WAL_PREFIX = 'wal/';
const MAGIC = Buffer.from('CWL1');

/** [pack sha, offset, length, rawLength] */
type Location = [string, number, number, number];

export interface WalRecord {
  format: 1;
  name: string;
  size: number;
  sha256: string;
  chunks: string[];
  locations: Record<string, Location>;
  archivedAt: string;
}

export function walKey(name: string): string {
  const m = WAL_FILE.exec(name);
  if (!m) throw new InvalidArgumentError('WAL file name', `${JSON.stringify(name)} is not a WAL segment, history or backup history file name`);
  return `${WAL_PREFIX}${m[1]}/${name}`;
}

function encodeRecord(repo: Repository, record: WalRecord): Buffer {
  const sealed = repo.codec.sealObject(Buffer.from(JSON.stringify(record)), repo.aad('wal'));
  return Buffer.concat([MAGIC, Buffer.from(sha256Hex(sealed), 'hex'), sealed]);
}

/** The archived record for `name`, or undefined when it is not archived. Verifies bytes, tag and name. */
export async function readWalRecord(repo: Repository, name: string): Promise<WalRecord | undefined> {
  const key = walKey(name);
  let bytes: Buffer;
  try {
    bytes = asBuffer(await repo.store.get(key));
  } catch (e) {
    if (e instanceof MissingObjectError) return undefined;
    throw e;
  }
  return decodeRecord(repo, key, bytes, name);
}

/** Why a stored WAL object is damaged, checked without keys; undefined when its bytes match the SHA-256 they carry. */
export function walObjectProblem(bytes: Uint8Array): string | undefined {
  const b = asBuffer(bytes);
  if (b.length < 36 || !b.subarray(0, 4).equals(MAGIC)) return 'not a WAL record';
  if (sha256Hex(b.subarray(36)) !== b.subarray(4, 36).toString('hex')) return 'SHA-256 of its bytes does not match the one it carries';
  return undefined;
}

export function decodeRecord(repo: Repository, key: string, bytes: Buffer, name = key.slice(key.lastIndexOf('/') + 1)): WalRecord {
  const problem = walObjectProblem(bytes);
  if (problem) throw new CorruptObjectError(key, problem);
  const plain = repo.codec.openObject(bytes.subarray(36), repo.aad('wal'));
  if (typeof plain === 'string') throw new CorruptObjectError(key, plain);
  const record = JSON.parse(plain.toString('utf8')) as WalRecord;
  if (record.name !== name) throw new CorruptObjectError(key, `holds the record of ${record.name}`);
  return record;
}

export interface WalPushResult {
  name: string;
  outcome: 'archived' | 'already-archived';
  /** Other `.ready` files archived ahead, in parallel. */
  ahead: string[];
}

/** Archives one WAL file; `path` as PostgreSQL passes it (%p, relative to the data directory). */
export async function walPush(repo: Repository, path: string, options: { ahead?: number } = {}): Promise<WalPushResult> {
  const name = basename(path);
  walKey(name);
  const ahead = options.ahead ?? 0;
  const others = ahead > 0 ? await readyFiles(dirname(path), name, ahead) : [];
  const limit = pLimit(2);
  const [outcome, ...rest] = await Promise.all([
    limit(() => pushOne(repo, path, name)),
    // Archiving ahead is best effort: PostgreSQL will ask for each of these again.
    ...others.map((n) => limit(() => pushOne(repo, join(dirname(path), n), n).catch(() => undefined))),
  ]);
  return { name, outcome: outcome!, ahead: others.filter((_, i) => rest[i] === 'archived') };
}

async function readyFiles(walDir: string, except: string, max: number): Promise<string[]> {
  const names = await readdir(join(walDir, 'archive_status')).catch(() => [] as string[]);
  return names
    .filter((n) => n.endsWith('.ready'))
    .map((n) => n.slice(0, -'.ready'.length))
    .filter((n) => n !== except && WAL_FILE.test(n))
    .sort()
    .slice(0, max);
}

/** Bytes of WAL chunks compressed and sealed as one group blob. */
const WAL_GROUP = 1024 * 1024;

async function pushOne(repo: Repository, path: string, name: string): Promise<'archived' | 'already-archived'> {
  const key = walKey(name);
  const data = await readFile(path);
  const sha = sha256Hex(data);
  const existing = await readWalRecord(repo, name);
  if (existing) return sameOrConflict(key, existing, sha);

  const chunks = chunkBuffer(data, repo.config.chunker);
  const ids = chunks.map((c) => repo.codec.id(c));
  const entries: PackEntry[] = [];
  const blobs: Buffer[] = [];
  const locations: Record<string, Location> = {};
  let offset = 0;
  repo.codec.startBatch();
  // WAL barely repeats itself across files, so its chunks compress together, in groups of up to WAL_GROUP bytes.
  const unique: number[] = [];
  for (let i = 0; i < chunks.length; i++) {
    const hex = ids[i]!.toString('hex');
    if (locations[hex]) continue;
    locations[hex] = ['', 0, 0, chunks[i]!.length];
    unique.push(i);
  }
  for (let g = 0; g < unique.length; ) {
    const members = [unique[g++]!];
    let bytes = chunks[members[0]!]!.length;
    while (g < unique.length && bytes + chunks[unique[g]!]!.length <= WAL_GROUP) {
      bytes += chunks[unique[g]!]!.length;
      members.push(unique[g++]!);
    }
    const blob = Buffer.from(members.length === 1 ? repo.codec.encode(ids[members[0]!]!, chunks[members[0]!]!) : repo.codec.encodeGroup(members.map((i) => ids[i]!), members.map((i) => chunks[i]!)));
    for (const i of members) {
      entries.push({ id: ids[i]!, offset, length: blob.length, rawLength: chunks[i]!.length });
      locations[ids[i]!.toString('hex')] = ['', offset, blob.length, chunks[i]!.length];
    }
    blobs.push(blob);
    offset += blob.length;
  }
  const pack = Buffer.concat([...blobs, sealedTrailer(repo, entries)]);
  const packSha = sha256Hex(pack);
  for (const loc of Object.values(locations)) loc[0] = packSha;
  await repo.store.put(packKey(packSha), pack);

  const record: WalRecord = { format: 1, name, size: data.length, sha256: sha, chunks: ids.map((id) => id.toString('hex')), locations, archivedAt: new Date().toISOString() };
  try {
    await repo.store.put(key, encodeRecord(repo, record));
  } catch (e) {
    if (!(e instanceof ObjectConflictError)) throw e;
    // Archived meanwhile by another push: fine if it is the same file.
    return sameOrConflict(key, (await readWalRecord(repo, name))!, sha);
  }
  return 'archived';
}

function sameOrConflict(key: string, existing: WalRecord, sha: string): 'already-archived' {
  if (existing.sha256 === sha) return 'already-archived';
  throw new ObjectConflictError(key, `already archived with SHA-256 ${existing.sha256}, but this file's is ${sha}; the archived one is kept`);
}

/** Reassembles an archived WAL file and checks it against its SHA-256. */
export async function fetchWalBytes(repo: Repository, name: string): Promise<Buffer> {
  const key = walKey(name);
  const record = await readWalRecord(repo, name);
  if (!record) throw new MissingObjectError(key, 'not in the WAL archive');
  const byPack = new Map<string, [string, Location][]>();
  for (const [id, loc] of Object.entries(record.locations)) {
    const list = byPack.get(loc[0]) ?? [];
    list.push([id, loc]);
    byPack.set(loc[0], list);
  }
  const plain = new Map<string, Buffer>();
  for (const [pack, list] of byPack) {
    const start = Math.min(...list.map(([, l]) => l[1]));
    const end = Math.max(...list.map(([, l]) => l[1] + l[2]));
    let data: Buffer;
    try {
      data = asBuffer(await repo.store.get(packKey(pack), { offset: start, length: end - start }));
    } catch (e) {
      if (e instanceof MissingObjectError) throw new MissingObjectError(packKey(pack), `needed by ${key}`);
      throw e;
    }
    for (const [id, [, offset, length]] of list) {
      const out = repo.codec.decode(Buffer.from(id, 'hex'), data.subarray(offset - start, offset - start + length));
      if (typeof out === 'string') throw new CorruptObjectError(packKey(pack), `${out} (needed by ${key})`);
      plain.set(id, Buffer.from(out));
    }
  }
  const bytes = Buffer.concat(record.chunks.map((id) => plain.get(id)!));
  if (bytes.length !== record.size || sha256Hex(bytes) !== record.sha256) throw new CorruptObjectError(key, 'reassembled WAL file does not match its SHA-256');
  return bytes;
}

async function writeAtomically(dest: string, bytes: Uint8Array): Promise<void> {
  const tmp = `${dest}.coffer-${randomBytes(4).toString('hex')}.tmp`;
  try {
    const fh = await open(tmp, 'w', 0o600);
    try {
      await fh.writeFile(bytes);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, dest);
  } catch (e) {
    await unlink(tmp).catch(() => undefined);
    throw e;
  }
}

export interface WalFetchOptions {
  /** Where prefetched segments wait (default: `.coffer-spool` beside `dest`). */
  spoolDir?: string;
}

/** `restore_command`: writes archived `name` to `dest`, from the prefetch spool when it is there. */
export async function walFetch(repo: Repository, name: string, dest: string, options: WalFetchOptions = {}): Promise<'archive' | 'spool'> {
  walKey(name);
  const spool = options.spoolDir ?? defaultSpool(dest);
  await clearStaleSpool(spool, name);
  const spooled = join(spool, name);
  try {
    await rename(spooled, dest);
    return 'spool';
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'EXDEV') {
      await copyFile(spooled, dest);
      await rm(spooled, { force: true });
      return 'spool';
    }
    if (code !== 'ENOENT') throw e;
  }
  await writeAtomically(dest, await fetchWalBytes(repo, name));
  return 'archive';
}

export function defaultSpool(dest: string): string {
  return join(dirname(dest), '.coffer-spool');
}

/** The next `count` segment names after `name` (none for history files). */
export function segmentsAfter(name: string, count: number, segmentBytes = 16 * 1024 * 1024): string[] {
  if (!WAL_SEGMENT.test(name)) return [];
  const out: string[] = [];
  let cur = name;
  for (let i = 0; i < count; i++) out.push((cur = nextSegment(cur, segmentBytes)));
  return out;
}

/** Fetches segments into the spool ahead of PostgreSQL's requests; stops at the first that is not archived. */
export async function walPrefetch(repo: Repository, names: readonly string[], spoolDir: string): Promise<string[]> {
  await mkdir(spoolDir, { recursive: true, mode: 0o700 });
  const present = new Set(await readdir(spoolDir));
  const done: string[] = [];
  const limit = pLimit(2);
  const results = await Promise.all(
    names.map((n) =>
      limit(async () => {
        if (present.has(n)) return true;
        try {
          await writeAtomically(join(spoolDir, n), await fetchWalBytes(repo, n));
          return true;
        } catch {
          return false;
        }
      }),
    ),
  );
  for (let i = 0; i < names.length && results[i]; i++) done.push(names[i]!);
  return done;
}

/** Spooled segments that sort before `name` on its timeline will never be asked for again. */
async function clearStaleSpool(spool: string, name: string): Promise<void> {
  const names = await readdir(spool).catch(() => [] as string[]);
  for (const n of names) {
    if (n.endsWith('.tmp') || (WAL_SEGMENT.test(n) && n.slice(0, 8) === name.slice(0, 8) && n < name)) await rm(join(spool, n), { force: true });
  }
}

/** Every archived WAL record key. */
export async function listWalKeys(repo: Repository): Promise<string[]> {
  return (await collectList(repo.store, WAL_PREFIX)).map((o) => o.key).sort();
}

