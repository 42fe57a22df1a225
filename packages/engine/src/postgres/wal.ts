/**
 * The WAL archive: `walPush` is PostgreSQL's archive_command, `walFetch` its
 * restore_command. A WAL file is archived once its record exists (format in
 * `format/wal-record.ts`), never before its data is durable: its chunks go
 * into packs (through the same writer as backups), written first.
 *
 * Every file belongs to a stanza: a segment's own page header names its
 * cluster (system identifier, segment size, major version), and a segment of
 * another cluster is refused. History and backup history files have no
 * header: they are accepted for the cluster whose `global/pg_control` sits
 * beside `pg_wal`, else for the stanza's current cluster. A file on a
 * timeline the stanza's archived history does not know is refused too: a
 * restored copy that promoted must not push its timeline into production's.
 *
 * Fetching distinguishes "not archived" (the store answered absent for the
 * record) from every other failure, because PostgreSQL ends recovery on the
 * first "not archived": the CLI turns this into exit statuses PostgreSQL
 * reads correctly (see `restore-command.ts`).
 */
import { constants as fsc } from 'node:fs';
import { access, copyFile, mkdir, open, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import pLimit from 'p-limit';
import { asBuffer, sha256Hex } from '../bytes.js';
import { TMP_SUFFIX, writeDurably } from '../durable.js';
import { pidFileAlive } from '../pid-file.js';
import { CorruptObjectError, MissingObjectError, ObjectConflictError, SourceError, StanzaMismatchError } from '../errors.js';
import { packKey } from '../format/keys-layout.js';
import { currentIdentity, type StanzaIdentity, type StanzaRecord } from '../format/stanza-record.js';
import {
  checkWalName,
  legacyWalKey,
  WAL_PREFIX,
  WAL_SEGMENT,
  WAL_STREAM,
  walKey,
  walStreamName,
  parseWalStreamName,
  type WalLocation,
  type WalRecord,
  type WalScope,
} from '../format/wal-record.js';
import type { Repository } from '../repository/repository.js';
import { decodeWalRecord, encodeWalRecord } from '../repository/sealed-records.js';
import { collectList } from '../store/object-store.js';
import { PackWriter } from '../content/pack-writer.js';
import { ChunkIndex } from '../repository/chunk-index.js';
import { Lease } from '../repository/leases.js';
import { formatLsn, nextSegment, segmentName, segmentNumber } from './layout.js';
import { historyName, parseHistory } from './timeline-history.js';
import { DEFAULT_STANZA, ensureStanza, readStanza, requireStanza, stanzaHasSystem } from './stanza.js';
import { neverArchived } from './restore-command.js';
import { readSegmentHeader } from './wal-header.js';
import { sealWal, type SealedWal } from './wal-seal.js';

export { WAL_PREFIX, walKey, type WalRecord, type WalScope };

/** The keys where `name` may be archived for `scope`: its own, then (format 1 repositories) the legacy one. */
function candidateKeys(repo: Repository, scope: WalScope, name: string): string[] {
  return repo.config.format === 1 && !WAL_STREAM.test(name) ? [walKey(scope, name), legacyWalKey(name)] : [walKey(scope, name)];
}

/** The archived record for `name`, or undefined when the store answers absent for it. Verifies bytes, tag and name. */
export async function readWalRecord(repo: Repository, scope: WalScope, name: string): Promise<{ key: string; record: WalRecord } | undefined> {
  for (const key of candidateKeys(repo, scope, name)) {
    const bytes = await repo.objects.getIfPresent(key);
    if (bytes) return { key, record: decodeWalRecord(repo, key, bytes) };
  }
  return undefined;
}

/** Whether `name` has a record for `scope` (its own key, or the legacy one in a format 1 repository). */
export async function isArchived(repo: Repository, scope: WalScope, name: string): Promise<boolean> {
  for (const key of candidateKeys(repo, scope, name)) if (await repo.objects.head(key)) return true;
  return false;
}

export interface WalPushOptions {
  /** Stanza of the cluster (default `main`). */
  stanza?: string;
  /** Also archive up to this many other `.ready` files, in parallel. */
  ahead?: number;
  /** Time-to-live of the push's lease (default 60 s), taken once there is something to write. */
  leaseTtlMs?: number;
}

export interface WalPushResult {
  name: string;
  outcome: 'archived' | 'already-archived';
  /** Other `.ready` files archived ahead, in parallel. */
  ahead: string[];
  /** Every file this call found durable in the repository (archived now or before): the one asked for and those ahead. */
  durable: DurableWal[];
}

/** A WAL file the repository holds: its name, SHA-256 and the system identifier of the cluster that wrote it. */
export interface DurableWal {
  name: string;
  sha256: string;
  systemIdentifier: string;
}

/** Archives one WAL file; `path` as PostgreSQL passes it (%p, relative to the data directory). */
export async function walPush(repo: Repository, path: string, options: WalPushOptions = {}): Promise<WalPushResult> {
  const name = basename(path);
  checkWalName(name);
  const stanza = options.stanza ?? DEFAULT_STANZA;
  const ahead = options.ahead ?? 0;
  const others = ahead > 0 ? await readyFiles(dirname(path), name, ahead) : [];
  const ctx = new PushContext(repo, stanza, dirname(dirname(resolve(path))), options.leaseTtlMs);
  const limit = pLimit(2);
  try {
    const [first, ...rest] = await Promise.all([
      limit(() => pushOne(ctx, path, name)),
      // Archiving ahead is best effort: PostgreSQL will ask for each of these again.
      ...others.map((n) => limit(() => pushOne(ctx, join(dirname(path), n), n).catch(() => undefined))),
    ]);
    const durable = [first!, ...rest].filter((p): p is Pushed => p !== undefined).map((p) => p.file);
    return { name, outcome: first!.outcome, ahead: others.filter((_, i) => rest[i]?.outcome === 'archived'), durable };
  } finally {
    await ctx.releaseLease();
  }
}

export interface WalStreamArchiverOptions {
  stanza?: string;
  /** The system identifier of the cluster the bytes come from (IDENTIFY_SYSTEM). */
  systemIdentifier: string;
  /** Where history files the stanza lacks may be found (none: they must be archived first). */
  walDir?: string;
  leaseTtlMs?: number;
  /** How long one lease serves before the next write takes a fresh one (default 60 s). */
  leaseCycleMs?: number;
}

/**
 * What `wal-receive` archives through: WAL received rather than read from
 * pg_wal, with the same checks and records as `walPush` — whole segments, and
 * in between each segment's streamed prefix (`<segment>.<length>.stream`),
 * each write storing only the bytes past the prefix stored before. Writes
 * run under a lease renewed while it is held and exchanged for a fresh one
 * every `leaseCycleMs`: a lease held for the receiver's life would hold
 * garbage collection off as long.
 */
export class WalStreamArchiver {
  private readonly contexts: CyclingContext;

  constructor(repo: Repository, options: WalStreamArchiverOptions) {
    this.contexts = new CyclingContext(repo, options.stanza, options.walDir ?? '/nonexistent/pg_wal', options, options.systemIdentifier);
  }

  /** Archives whole file `name` (a segment, or a history file); `prior`: its prefix already stored; `sha256`: of `data`, when the caller kept a running one. */
  async file(name: string, data: Buffer, prior?: StoredPrefix, sha256?: string): Promise<{ outcome: 'archived' | 'already-archived'; file: DurableWal }> {
    checkWalName(name);
    const { outcome, file } = await pushOne(await this.contexts.current(), `${name} (received)`, name, data, { ...(prior ? { prior } : {}), ...(sha256 ? { sha256 } : {}) });
    return { outcome, file };
  }

  /** Makes the first `data.length` bytes of `segment` durable as its streamed prefix; what is stored now. */
  async prefix(segment: string, data: Buffer, prior?: StoredPrefix, sha256?: string): Promise<StoredPrefix> {
    if (!WAL_SEGMENT.test(segment)) throw new SourceError(segment, 'not a WAL segment name');
    return (await pushOne(await this.contexts.current(), `${segment} (received)`, segment, data, { partial: true, ...(prior ? { prior } : {}), ...(sha256 ? { sha256 } : {}) })).stored;
  }

  close(): Promise<void> {
    return this.contexts.close();
  }
}

export interface WalFilePusherOptions {
  stanza?: string;
  leaseTtlMs?: number;
  /** How long one lease serves before the next write takes a fresh one (default 60 s). */
  leaseCycleMs?: number;
}

/**
 * Archives files of one pg_wal directory, one after another or several at
 * once, for a long-lived process (`coffer wal-archiver`): the same checks and
 * records as `walPush`, with the repository opened once, the stanza and the
 * cluster's pg_control read once, and a lease exchanged every `leaseCycleMs`.
 */
export class WalFilePusher {
  private readonly contexts: CyclingContext;

  constructor(
    repo: Repository,
    readonly walDir: string,
    options: WalFilePusherOptions = {},
  ) {
    this.contexts = new CyclingContext(repo, options.stanza, walDir, options);
  }

  /** Archives `name` from the directory; `data`: its bytes when the caller read them (with `sealed`, sealed already by a worker thread: its first page is enough). */
  async push(name: string, data?: Buffer, sealed?: SealedWal): Promise<{ outcome: 'archived' | 'already-archived'; file: DurableWal }> {
    checkWalName(name);
    const { outcome, file } = await pushOne(await this.contexts.current(), join(this.walDir, name), name, data, sealed ? { sealed } : {});
    return { outcome, file };
  }

  /**
   * Takes the lease now, while the first file is read and sealed, rather
   * than when its pack is written. A failure shows in the push, which takes
   * the lease as always.
   */
  prepare(): void {
    void this.contexts
      .current()
      .then((ctx) => ctx.lease())
      .catch(() => undefined);
  }

  /** Lets go of the lease while nothing is being archived (call with no push running). */
  idle(): Promise<void> {
    return this.contexts.release();
  }

  close(): Promise<void> {
    return this.contexts.close();
  }
}

/** A push context for a long-lived writer, exchanged (lease and all) every `leaseCycleMs`: a lease held for a process's life would hold garbage collection off as long. */
class CyclingContext {
  private ctx: PushContext;
  private since = performance.now();
  private readonly cycleMs: number;

  constructor(
    private readonly repo: Repository,
    private readonly stanza: string | undefined,
    private readonly walDir: string,
    private readonly options: { leaseTtlMs?: number; leaseCycleMs?: number },
    private readonly systemIdentifier?: string,
  ) {
    this.ctx = this.fresh();
    this.cycleMs = options.leaseCycleMs ?? 60_000;
  }

  async current(): Promise<PushContext> {
    if (performance.now() - this.since >= this.cycleMs) {
      const old = this.ctx;
      this.ctx = this.fresh();
      this.since = performance.now();
      await old.releaseLease();
    }
    return this.ctx;
  }

  /** Lets go of the lease now (nothing is being written): garbage collection need not wait for it. The next write takes another. */
  async release(): Promise<void> {
    if (!this.ctx.leased) return;
    const old = this.ctx;
    this.ctx = this.fresh();
    this.since = performance.now();
    await old.releaseLease();
  }

  close(): Promise<void> {
    return this.ctx.releaseLease();
  }

  private fresh(): PushContext {
    return new PushContext(this.repo, this.stanza ?? DEFAULT_STANZA, dirname(this.walDir), this.options.leaseTtlMs, this.systemIdentifier);
  }
}

/** What one `walPush` call learns once: the stanza for each identity, the cluster's pg_control. */
class PushContext {
  private readonly stanzas = new Map<string, Promise<StanzaRecord>>();
  /** Timelines whose history file was found archived (a streamed segment's flushes ask again and again). */
  readonly histories = new Set<string>();
  /** Archived history files read (they never change once archived), by system identifier and timeline. */
  readonly historyTexts = new Map<string, string>();
  private control: Promise<string | undefined> | undefined;
  private leaseTaken: Promise<Lease> | undefined;
  constructor(
    readonly repo: Repository,
    readonly stanza: string,
    /** The data directory: the parent of the `pg_wal` that %p names. */
    readonly pgdata: string,
    private readonly leaseTtlMs: number | undefined,
    /** The cluster's system identifier when known otherwise (a replication connection's IDENTIFY_SYSTEM): no pg_control is read. */
    private readonly systemIdentifier?: string,
  ) {}

  /**
   * The push's lease, taken before its first pack is written: a pack is
   * referenced by nothing until its record is, and garbage collection waits
   * for the lease rather than delete it in between.
   */
  lease(): Promise<Lease> {
    this.leaseTaken ??= Lease.acquire(this.repo, { purpose: 'wal-push', ...(this.leaseTtlMs !== undefined ? { ttlMs: this.leaseTtlMs } : {}) });
    return this.leaseTaken;
  }

  async releaseLease(): Promise<void> {
    if (this.leaseTaken) await (await this.leaseTaken.catch(() => undefined))?.release();
  }

  private standby: Promise<boolean> | undefined;

  /** Whether the server archiving runs as a standby (standby.signal in its data directory). */
  isStandby(): Promise<boolean> {
    this.standby ??= access(join(this.pgdata, 'standby.signal')).then(
      () => true,
      () => false,
    );
    return this.standby;
  }

  /** Whether a lease was taken (and so may be held). */
  get leased(): boolean {
    return this.leaseTaken !== undefined;
  }

  stanzaFor(identity: StanzaIdentity): Promise<StanzaRecord> {
    const key = JSON.stringify(identity);
    let p = this.stanzas.get(key);
    if (!p) this.stanzas.set(key, (p = ensureStanza(this.repo, this.stanza, identity)));
    return p;
  }

  /** The system identifier in `global/pg_control` beside pg_wal, when there is one to read. */
  controlSystemIdentifier(): Promise<string | undefined> {
    this.control ??= this.systemIdentifier !== undefined ? Promise.resolve(this.systemIdentifier) : readControlSystemIdentifier(this.pgdata);
    return this.control;
  }
}

/** pg_control begins with the cluster's system identifier (uint64, native byte order: little-endian here). */
export async function readControlSystemIdentifier(pgdata: string): Promise<string | undefined> {
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

async function readyFiles(walDir: string, except: string, max: number): Promise<string[]> {
  const names = await readdir(join(walDir, 'archive_status')).catch(() => [] as string[]);
  return names
    .filter((n) => n.endsWith('.ready'))
    .map((n) => n.slice(0, -'.ready'.length))
    .filter((n) => {
      if (n === except) return false;
      try {
        checkWalName(n);
        return true;
      } catch {
        return false;
      }
    })
    .sort()
    .slice(0, max);
}

/** The scope a file belongs to, refusing files of another cluster. */
async function scopeOf(ctx: PushContext, path: string, name: string, data: Buffer, size: number): Promise<WalScope> {
  const isSegment = WAL_SEGMENT.test(name.slice(0, 24)) && !name.endsWith('.backup') && !name.endsWith('.history');
  if (isSegment) {
    const header = readSegmentHeader(data);
    if (typeof header === 'string') throw new SourceError(path, header);
    if (!name.endsWith('.partial') && size !== header.segmentSize) throw new SourceError(path, `${size} bytes, but its header says segments are ${header.segmentSize} bytes`);
    const record = await ctx.stanzaFor({ systemIdentifier: header.systemIdentifier, walSegmentSize: header.segmentSize, ...(header.major !== undefined ? { major: header.major } : {}) });
    return { stanza: ctx.stanza, systemIdentifier: currentIdentity(record).systemIdentifier };
  }
  const sysid = await ctx.controlSystemIdentifier();
  if (sysid) return { stanza: ctx.stanza, systemIdentifier: currentIdentity(await ctx.stanzaFor({ systemIdentifier: sysid })).systemIdentifier };
  const record = await readStanza(ctx.repo, ctx.stanza);
  if (!record) throw new StanzaMismatchError(ctx.stanza, `does not exist yet, and ${name} (no page header) with no global/pg_control beside it cannot say which cluster it is from: archive a segment first or run 'coffer stanza create'`);
  return { stanza: ctx.stanza, systemIdentifier: currentIdentity(record).systemIdentifier };
}

/**
 * Refuses a file whose timeline the stanza's archived history does not lead
 * to. A cluster that came to a new repository already on timeline N keeps
 * its history files in pg_wal (PostgreSQL never removes them): those are
 * archived first, each checked the same way.
 */
async function checkTimeline(ctx: PushContext, scope: WalScope, walDir: string, name: string, data: Buffer, size: number): Promise<void> {
  const tli = parseInt(name.slice(0, 8), 16);
  if (name.endsWith('.history')) {
    const parent = historyParent(data);
    if (parent === undefined) throw new SourceError(name, 'a timeline history file with no parent timeline line');
    if (parent >= tli) throw new SourceError(name, `names parent timeline ${parent}, not below its own ${tli}`);
    if (parent > 1) await requireHistory(ctx, scope, walDir, parent, `timeline ${tli} branches from timeline ${parent}`);
    return;
  }
  if (tli > 1) await requireHistory(ctx, scope, walDir, tli, `${name} is on timeline ${tli}`);
  if (!name.endsWith('.partial')) await refuseSuperseded(ctx, scope, name, data, size);
}

/**
 * Archive fencing: refuses a segment of timeline T that reaches past the
 * point where a newer timeline branched off T (its history file, archived by
 * the primary that was promoted, says where). Such WAL was written by an old
 * primary after a failover — it is in no history recovery follows, and
 * storing it would offer a restore writes the cluster never kept. Segments
 * that end at or before the switch point are still welcome (the old primary
 * may archive what it wrote before). PostgreSQL's own `.partial` file of the
 * old timeline is not refused: the new primary archives it.
 */
async function refuseSuperseded(ctx: PushContext, scope: WalScope, name: string, data: Buffer, size: number): Promise<void> {
  const tli = parseInt(name.slice(0, 8), 16);
  const header = readSegmentHeader(data);
  if (typeof header === 'string') return;
  const end = segmentNumber(name, header.segmentSize) * BigInt(header.segmentSize) + BigInt(size);
  for (let next = tli + 1; ; next++) {
    const history = historyName(next);
    let text = ctx.historyTexts.get(`${scope.systemIdentifier}/${next}`);
    if (text === undefined) {
      const bytes = await fetchWalBytes(ctx.repo, scope, history);
      if (!bytes) return;
      text = bytes.toString('utf8');
      ctx.historyTexts.set(`${scope.systemIdentifier}/${next}`, text);
    }
    const switchAt = parseHistory(text, history, []).find(([parent]) => parent === tli)?.[1];
    if (switchAt !== undefined && end > switchAt) {
      throw new StanzaMismatchError(
        scope.stanza,
        `${name} is on timeline ${tli} and reaches past ${formatLsn(switchAt)}, where timeline ${next} branched off it (${history}): WAL an old primary wrote after a failover is in no history recovery follows, and is not archived`,
      );
    }
  }
}

async function requireHistory(ctx: PushContext, scope: WalScope, walDir: string, tli: number, what: string): Promise<void> {
  const history = historyName(tli);
  const known = `${scope.systemIdentifier}/${tli}`;
  if (ctx.histories.has(known)) return;
  const archived = ctx.repo.objects.replicated ? await readWalRecord(ctx.repo, scope, history) : (await isArchived(ctx.repo, scope, history)) || undefined;
  if (archived) {
    if (archived !== true) await replicateRecord(ctx.repo, archived.key, archived.record);
    ctx.histories.add(known);
    return;
  }
  const local = join(walDir, history);
  if (await fileSize(local) !== undefined) {
    await pushOne(ctx, local, history);
    return;
  }
  throw new StanzaMismatchError(
    scope.stanza,
    `${what}, which is not in the stanza's archived history (${history} is neither archived for system ${scope.systemIdentifier} nor in ${walDir}): a restored copy that promoted must not archive here (restores write archive_mode = off unless --archive)`,
  );
}

/** The parent timeline of a history file: the first field of its last entry line. */
function historyParent(data: Buffer): number | undefined {
  const lines = data.toString('utf8').split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
  const last = lines[lines.length - 1];
  const m = last ? /^(\d+)\s/.exec(last) : null;
  return m ? Number(m[1]) : undefined;
}

interface Pushed {
  outcome: 'archived' | 'already-archived';
  file: DurableWal;
  /** What of the file is in the repository under chunks this push knows (nothing, when it was archived before). */
  stored: StoredPrefix;
}

/**
 * Chunks of a streamed segment's first `length` bytes already in the
 * repository (a partial record names them): the next partial and the whole
 * segment's record reuse them, so each flush writes only what came since.
 */
export interface StoredPrefix {
  length: number;
  chunks: string[];
  locations: Record<string, WalLocation>;
}

interface StreamedWrite {
  /** What of these bytes is stored already (their first `prior.length`). */
  prior?: StoredPrefix;
  /** The bytes already hashed, cut and sealed (by a worker thread). */
  sealed?: SealedWal;
  /** Record the bytes as the segment's streamed prefix (`<segment>.<length>.stream`), not as the whole file. */
  partial?: boolean;
  /** The bytes' SHA-256, from a hash the caller kept running as they arrived (hashing a 16 MiB prefix on each flush would not keep pace). */
  sha256?: string;
}

async function pushOne(ctx: PushContext, path: string, name: string, received?: Buffer, streamed: StreamedWrite = {}): Promise<Pushed> {
  const { repo } = ctx;
  let data: Buffer;
  try {
    data = received ?? (await readFile(path));
  } catch (e) {
    throw new SourceError(path, (e as NodeJS.ErrnoException).code ?? (e as Error).message, { cause: e });
  }
  // Sealed on a worker thread, `data` is the file's first page only (the header says whose it is).
  const size = streamed.sealed?.size ?? data.length;
  const prior = streamed.prior && streamed.prior.length <= size ? streamed.prior : undefined;
  const recordName = streamed.partial ? walStreamName(name, size) : name;
  const scope = await scopeOf(ctx, path, streamed.partial ? `${name}.partial` : name, data, size);
  const sha = streamed.sealed?.sha256 ?? streamed.sha256 ?? sha256Hex(data);
  const file: DurableWal = { name: recordName, sha256: sha, systemIdentifier: scope.systemIdentifier };
  const noneStored = { length: 0, chunks: [], locations: {} };
  // A partial is looked for by nobody before it is written: its create-only put says whether it was there.
  const existing = streamed.partial ? undefined : await readWalRecord(repo, scope, name);
  if (existing) {
    const outcome = sameOrConflict(existing.key, existing.record, sha);
    await replicateRecord(repo, existing.key, existing.record);
    return { outcome, file, stored: noneStored };
  }
  // (Sealed on a worker thread, `data` is the first page: the whole file is read again for the comparison.)
  if (!streamed.partial && WAL_SEGMENT.test(name) && (await ctx.isStandby()) && (await isPaddedStreamedPrefix(repo, scope, name, () => (streamed.sealed ? readFile(path) : Promise.resolve(data))))) {
    // A standby with archive_mode = always archives what it restored: here a segment wal-fetch served as a
    // streamed prefix padded with zeros. Stored as the whole segment it would stand for WAL the primary had
    // not written yet, and refuse the real segment later. What it holds is in the repository already.
    return { outcome: 'already-archived', file, stored: noneStored };
  }
  await checkTimeline(ctx, scope, dirname(path), name, data, size);
  const key = walKey(scope, recordName);

  // The CPU-heavy part (cut, compress, seal), unless a worker thread did it already.
  const prepared = streamed.sealed ?? sealWal(repo.objects.codec, data, prior?.length ?? 0, sha);
  const ids = prepared.ids;
  // WAL barely repeats itself across files: it is not looked up in the chunk index, and its chunks compress
  // together, in groups. Its packs are not indexed: the record names their locations.
  const lease = await ctx.lease();
  const writer = new PackWriter(repo, new ChunkIndex(), { indexed: false, maxUploads: 1 });
  // A fresh index: what it claims is each id's first piece, which is what was sealed.
  writer.claim(ids);
  await writer.add(prepared.sealed);
  await writer.finish();
  const locations: Record<string, WalLocation> = { ...prior?.locations };
  for (const pack of writer.packs) for (const e of pack.entries) locations[e.id.toString('hex')] = [pack.sha, e.offset, e.length, e.rawLength];
  const allChunks = [...(prior?.chunks ?? []), ...ids.map((id) => id.toString('hex'))];
  const stored: StoredPrefix = { length: size, chunks: allChunks, locations };

  const record: WalRecord = {
    format: 2,
    name: recordName,
    stanza: scope.stanza,
    systemIdentifier: scope.systemIdentifier,
    size,
    sha256: sha,
    chunks: allChunks,
    locations: Object.fromEntries(allChunks.map((id) => [id, locations[id]!])),
    archivedAt: new Date().toISOString(),
  };
  try {
    lease.prove(`archiving ${recordName}`);
    await repo.objects.put(key, encodeWalRecord(repo, record));
  } catch (e) {
    if (!(e instanceof ObjectConflictError)) throw e;
    // Archived meanwhile by another push (or streamed before a restart): fine if it is the same file. What
    // follows builds on that record's chunks, never on the packs just written, which nothing references.
    const other = (await readWalRecord(repo, scope, recordName))!.record;
    const outcome = sameOrConflict(key, other, sha);
    await replicateRecord(repo, key, other);
    return { outcome, file, stored: { length: other.size, chunks: other.chunks, locations: other.locations } };
  }
  return { outcome: 'archived', file, stored };
}

/**
 * A record found archived already, and the packs it names, copied to each
 * store of a replicated repository that lacks them (archived before that
 * mirror was added, or by a push that reached only some stores): the file is
 * acknowledged only once every store holds it.
 */
async function replicateRecord(repo: Repository, key: string, record: WalRecord): Promise<void> {
  if (!repo.objects.replicated) return;
  const packs = new Set(Object.values(record.locations).map(([pack]) => packKey(pack)));
  // The packs first: a store never holds a record whose packs it lacks.
  await repo.objects.replicate([...packs]);
  await repo.objects.replicate([key]);
}

function sameOrConflict(key: string, existing: WalRecord, sha: string): 'already-archived' {
  if (existing.sha256 === sha) return 'already-archived';
  throw new ObjectConflictError(key, `already archived with SHA-256 ${existing.sha256}, but this file's is ${sha}; the archived one is kept`);
}

/**
 * Reassembles an archived WAL file and checks it against its SHA-256 (and,
 * read from a format 1 repository, against the scope's system identifier).
 * Undefined only when the store answers that the file's record is absent;
 * a missing pack, damaged bytes or an unreachable store throw.
 */
export async function fetchWalBytes(repo: Repository, scope: WalScope, name: string, into?: Buffer): Promise<Buffer | undefined> {
  const found = await readWalRecord(repo, scope, name);
  return found ? walRecordBytes(repo, scope, name, found.key, found.record, into) : undefined;
}

/**
 * The WAL file a record (stored at `key`) stands for, read from its packs and
 * checked against its SHA-256; in `into` (a view of it) when it fits there.
 */
export async function walRecordBytes(repo: Repository, scope: WalScope, name: string, key: string, record: WalRecord, into?: Buffer): Promise<Buffer> {
  // Each chunk is decoded straight into its place in the file (a chunk repeated in the file — zeroes at a
  // segment's end — is copied from its first place afterwards), not gathered and joined: a segment is
  // 16 MiB, and copying it twice more cost more than decompressing it.
  const firstAt = new Map<string, number>();
  let size = 0;
  for (const id of record.chunks) {
    const loc = record.locations[id];
    if (!loc) throw new CorruptObjectError(key, `lists chunk ${id} but no location for it`);
    if (!firstAt.has(id)) firstAt.set(id, size);
    size += loc[3];
  }
  if (size !== record.size) throw new CorruptObjectError(key, `lists chunks of ${size} bytes for a file of ${record.size}`);
  const bytes = into && into.length >= size ? into.subarray(0, size) : Buffer.allocUnsafe(size);
  const byPack = new Map<string, [string, WalLocation][]>();
  for (const id of firstAt.keys()) {
    const loc = record.locations[id]!;
    const list = byPack.get(loc[0]) ?? [];
    list.push([id, loc]);
    byPack.set(loc[0], list);
  }
  for (const [pack, list] of byPack) {
    const start = Math.min(...list.map(([, l]) => l[1]));
    const end = Math.max(...list.map(([, l]) => l[1] + l[2]));
    let data: Buffer;
    try {
      data = asBuffer(await repo.objects.get(packKey(pack), { offset: start, length: end - start }));
    } catch (e) {
      // The record exists, so this file was archived: a missing pack is damage, never "not archived".
      if (e instanceof MissingObjectError) throw new MissingObjectError(packKey(pack), `needed by ${key}`);
      throw e;
    }
    for (const [id, [, offset, length, rawLength]] of list) {
      const slot = bytes.subarray(firstAt.get(id)!, firstAt.get(id)! + rawLength);
      const out = repo.objects.codec.decode(Buffer.from(id, 'hex'), data.subarray(offset - start, offset - start + length), slot);
      if (typeof out === 'string') throw new CorruptObjectError(packKey(pack), `${out} (needed by ${key})`);
      if (out.length !== rawLength) throw new CorruptObjectError(packKey(pack), `chunk ${id} holds ${out.length} bytes, ${key} says ${rawLength}`);
      // A chunk stored raw opens as a view of its blob, not of the slot.
      if (out.buffer !== slot.buffer || out.byteOffset !== slot.byteOffset) out.copy(slot);
    }
  }
  let at = 0;
  for (const id of record.chunks) {
    const first = firstAt.get(id)!;
    const rawLength = record.locations[id]![3];
    if (first !== at) bytes.copy(bytes, at, first, first + rawLength);
    at += rawLength;
  }
  if (sha256Hex(bytes) !== record.sha256) throw new CorruptObjectError(key, 'reassembled WAL file does not match its SHA-256');
  if (record.stanza === undefined && WAL_SEGMENT.test(name.slice(0, 24)) && !name.endsWith('.backup')) {
    const header = readSegmentHeader(bytes);
    if (typeof header !== 'string' && header.systemIdentifier !== scope.systemIdentifier) {
      throw new StanzaMismatchError(scope.stanza, `${key} (format 1, no stanza) is WAL of system ${header.systemIdentifier}, not ${scope.systemIdentifier}`);
    }
  }
  return bytes;
}

export interface WalFetchOptions {
  /** Where prefetched segments wait (default: `.coffer-spool` beside `dest`). */
  spoolDir?: string;
  /** After a segment is served, fetch this many following ones in the background (default 0). */
  prefetch?: number;
  /**
   * Starts that background fetch of `names` into `spoolDir` — `walPrefetch`
   * in a process of its own, which outlives this call (the CLI starts a
   * detached `coffer wal-prefetch`). Called only when no prefetcher is at
   * work on the spool, so prefetchers never multiply.
   */
  startPrefetcher?: (names: string[], spoolDir: string, scope: WalScope, segmentBytes: number) => void;
  /**
   * The data directory restore_command runs in. While its backup_label is
   * there (recovery has not begun to replay), a call that serves no segment
   * — the history files recovery asks for first — starts the prefetcher at
   * the backup's first segment, so it is under way before it is asked for.
   */
  pgdata?: string;
}

export interface WalFetchResult {
  /**
   * `absent`: the store answered that this file is not archived (PostgreSQL's "not found");
   * `stream`: only a streamed prefix of the segment is, served zero-padded.
   */
  outcome: 'archive' | 'spool' | 'stream' | 'absent';
  /** Bytes written to `dest` (a segment's size tells the cluster's segment size). */
  size: number;
}

/**
 * `restore_command`: writes archived `name` to `dest`, from the prefetch
 * spool when it is there, then (with `prefetch` and `startPrefetcher`) has
 * the next segments fetched in the background while PostgreSQL replays this one.
 */
export async function walFetch(repo: Repository, scope: WalScope, name: string, dest: string, options: WalFetchOptions = {}): Promise<WalFetchResult> {
  const result = await fetchOne(repo, scope, name, dest, options);
  const { prefetch = 0, startPrefetcher } = options;
  if (prefetch > 0 && startPrefetcher) {
    const spool = options.spoolDir ?? defaultSpool(dest);
    const next = result.outcome !== 'absent' ? segmentsAfter(name, prefetch, result.size) : [];
    const start = next.length === 0 && options.pgdata !== undefined ? await backupLabelStart(options.pgdata) : undefined;
    if ((next.length > 0 || start) && !(await prefetcherRunning(spool))) {
      if (next.length > 0) startPrefetcher(next, spool, scope, result.size);
      else if (start) {
        // Where recovery stands, as restore_command would have noted it: just before the backup's first segment.
        const number = segmentNumber(start.name, start.segmentBytes);
        await mkdir(spool, { recursive: true, mode: 0o700 });
        if (number > 0n) await writeFile(join(spool, SPOOL_WANTED), segmentName(parseInt(start.name.slice(0, 8), 16), number - 1n, start.segmentBytes)).catch(() => undefined);
        startPrefetcher([start.name], spool, scope, start.segmentBytes);
      }
    }
  }
  return result;
}

/**
 * The first WAL segment the backup restored in `pgdata` needs, from its
 * backup_label, and the segment size: the one under which the label's start
 * LSN falls in that segment (undefined when no label, or when more than one
 * size would fit).
 */
export async function backupLabelStart(pgdata: string): Promise<{ name: string; segmentBytes: number } | undefined> {
  const label = await readFile(join(pgdata, 'backup_label'), 'utf8').catch(() => undefined);
  const m = label && /^START WAL LOCATION: ([0-9A-F]+\/[0-9A-F]+) \(file ([0-9A-F]{24})\)$/m.exec(label);
  if (!m) return undefined;
  const [hi, lo] = m[1]!.split('/').map((h) => BigInt(`0x${h}`)) as [bigint, bigint];
  const lsn = (hi << 32n) | lo;
  const name = m[2]!;
  const fits: number[] = [];
  for (let bytes = 1 << 20; bytes <= 1 << 30; bytes *= 2) if (segmentName(parseInt(name.slice(0, 8), 16), lsn / BigInt(bytes), bytes) === name) fits.push(bytes);
  return fits.length === 1 ? { name, segmentBytes: fits[0]! } : undefined;
}

async function fetchOne(repo: Repository, scope: WalScope, name: string, dest: string, options: WalFetchOptions): Promise<WalFetchResult> {
  checkWalName(name);
  if (neverArchived(name)) return { outcome: 'absent', size: 0 };
  const spool = options.spoolDir ?? defaultSpool(dest);
  await clearStaleSpool(spool, name);
  // Where recovery stands, for a prefetcher that follows it (a hint: nothing depends on it being written).
  if (WAL_SEGMENT.test(name)) await writeFile(join(spool, SPOOL_WANTED), name).catch(() => undefined);
  const spooled = join(spool, name);
  const size = await fileSize(spooled);
  if (size !== undefined) {
    try {
      await rename(spooled, dest);
      return { outcome: 'spool', size };
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'EXDEV') {
        await copyFile(spooled, dest);
        await rm(spooled, { force: true });
        return { outcome: 'spool', size };
      }
      if (code !== 'ENOENT') throw e;
    }
  }
  const bytes = await fetchWalBytes(repo, scope, name);
  if (bytes) {
    await writeDurably(dest, bytes);
    return { outcome: 'archive', size: bytes.length };
  }
  const streamed = WAL_SEGMENT.test(name) ? await fetchStreamedSegment(repo, scope, name) : undefined;
  if (!streamed) return { outcome: 'absent', size: 0 };
  await writeDurably(dest, streamed);
  return { outcome: 'stream', size: streamed.length };
}

/**
 * Whether `data` (a whole segment's bytes) is nothing but a streamed prefix
 * of segment `name` the repository holds, zeros after it: what `wal-fetch`
 * serves for a segment not yet whole.
 */
async function isPaddedStreamedPrefix(repo: Repository, scope: WalScope, name: string, bytes: () => Promise<Buffer>): Promise<boolean> {
  const longest = await longestStreamed(repo, scope, name);
  if (longest === undefined) return false;
  const data = await bytes();
  let end = data.length;
  while (end > 0 && data[end - 1] === 0) end--;
  const prefix = await fetchWalBytes(repo, scope, longest);
  // Served when a shorter prefix was the longest: its bytes are the start of today's longest.
  return prefix !== undefined && end <= prefix.length && data.subarray(0, end).equals(prefix.subarray(0, end));
}

/**
 * Segment `name` as far as `wal-receive` made it durable: its longest
 * streamed prefix, zero-padded to the segment size its header names (replay
 * ends at the zeros as at the end of any WAL). Undefined when nothing of it
 * was streamed — or when the whole segment was archived meanwhile, which the
 * caller then fetches: a prefix is never served while the segment exists.
 */
export async function fetchStreamedSegment(repo: Repository, scope: WalScope, name: string): Promise<Buffer | undefined> {
  const longest = await longestStreamed(repo, scope, name);
  if (longest === undefined) return undefined;
  const prefix = await fetchWalBytes(repo, scope, longest);
  if (await isArchived(repo, scope, name)) return await fetchWalBytes(repo, scope, name);
  if (!prefix) return undefined; // removed since the listing (superseded): the segment is looked for again next call
  const header = readSegmentHeader(prefix);
  if (typeof header === 'string') throw new CorruptObjectError(walKey(scope, longest), header);
  const out = Buffer.alloc(header.segmentSize);
  prefix.copy(out);
  return out;
}

/** The name of segment `name`'s longest streamed prefix in the repository, if any. */
export async function longestStreamed(repo: Repository, scope: WalScope, name: string): Promise<string | undefined> {
  let best: { name: string; length: number } | undefined;
  for (const o of await repo.objects.list(`${walKey(scope, name)}.`)) {
    const n = o.key.slice(o.key.lastIndexOf('/') + 1);
    const parsed = parseWalStreamName(n);
    if (parsed?.segment === name && (best === undefined || parsed.length > best.length)) best = { name: n, length: parsed.length };
  }
  return best?.name;
}

async function fileSize(path: string): Promise<number | undefined> {
  const fh = await open(path, 'r').catch(() => undefined);
  if (!fh) return undefined;
  try {
    return (await fh.stat()).size;
  } finally {
    await fh.close();
  }
}

export function defaultSpool(dest: string): string {
  return join(dirname(dest), '.coffer-spool');
}

/** The next `count` segment names after `name` (none for history files), for the cluster's segment size. */
export function segmentsAfter(name: string, count: number, segmentBytes: number): string[] {
  if (!WAL_SEGMENT.test(name)) return [];
  const out: string[] = [];
  let cur = name;
  for (let i = 0; i < count; i++) out.push((cur = nextSegment(cur, segmentBytes)));
  return out;
}

const PREFETCH_LOCK = '.prefetch.lock';

/**
 * Whether a prefetcher is at work on `spoolDir` (its lock names a live
 * process): restore_command starts none then, so prefetchers never multiply.
 */
export function prefetcherRunning(spoolDir: string): Promise<boolean> {
  return pidFileAlive(join(spoolDir, PREFETCH_LOCK), false);
}

/** Takes the spool's prefetch lock for this process; false when a live prefetcher holds it. */
async function takePrefetchLock(spoolDir: string): Promise<boolean> {
  const lock = join(spoolDir, PREFETCH_LOCK);
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fh = await open(lock, fsc.O_CREAT | fsc.O_EXCL | fsc.O_WRONLY, 0o600);
      await fh.writeFile(String(process.pid));
      await fh.close();
      return true;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      if (await prefetcherRunning(spoolDir)) return false;
      // Left by a prefetcher that died: clear it and try once more.
      await rm(lock, { force: true });
    }
  }
  return false;
}

export interface WalPrefetchOptions {
  /**
   * Keep following: fetch on past `names`, keeping up to this many bytes of
   * segments spooled ahead of the last one restore_command asked for, until
   * the archive ends (a segment not archived), nothing was asked for
   * `idleExitMs`, or the spool is gone. Without it, only `names` are fetched.
   */
  queueBytes?: number;
  /** Following: return after this long with no request (default 60 s). */
  idleExitMs?: number;
  /** Segments fetched at once (default 2). */
  parallel?: number;
  /** The cluster's WAL segment size (default 16 MiB): how segment names follow one another. */
  segmentBytes?: number;
  /** Following: how long to stay once the archive's end is reached (default 5 s). */
  lingerMs?: number;
}

/** The spool file where restore_command notes the segment it asked for last: how far ahead the prefetcher is. */
export const SPOOL_WANTED = '.wanted';

/**
 * Fetches segments into the spool ahead of PostgreSQL's requests, stopping at
 * the first that is not archived; one prefetcher per spool at a time.
 * Returns the names spooled by this call (none when another prefetcher holds the spool).
 */
export async function walPrefetch(repo: Repository, scope: WalScope, names: readonly string[], spoolDir: string, options: WalPrefetchOptions = {}): Promise<string[]> {
  await mkdir(spoolDir, { recursive: true, mode: 0o700 });
  if (!(await takePrefetchLock(spoolDir))) return [];
  try {
    // Notes of an earlier prefetcher said what was absent then, not now.
    await clearNotes(spoolDir);
    const present = new Set(await readdir(spoolDir));
    const limit = pLimit(Math.max(1, options.parallel ?? 2));
    // One segment-sized buffer per fetch at once, used again for the next segment: a fresh 16 MiB buffer
    // per segment costs a page fault for every 4 KiB of it.
    const buffers: Buffer[] = [];
    const fetchTo = async (n: string, again = false): Promise<'spooled' | 'absent' | 'failed'> => {
      if (present.has(n) && !again) return 'spooled';
      let buffer = buffers.pop();
      try {
        const bytes = await fetchWalBytes(repo, scope, n, buffer);
        if (!bytes) {
          // Noted so that a call for it does not wait for this prefetcher, but asks the store itself: "not
          // archived" is true only as of this look, and a file archived since must be served.
          await writeFile(join(spoolDir, absentNote(n)), '').catch(() => undefined);
          return 'absent';
        }
        // Kept: a segment's own buffer (small files come from Node's shared pool, never to be written into again).
        if (bytes.buffer !== buffer?.buffer && bytes.byteLength >= 1 << 20) buffer = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
        await writeDurably(join(spoolDir, n), bytes);
        return 'spooled';
      } catch (e) {
        // restore_command fetches it again itself, and reports what goes wrong; the note spares it waiting for this.
        await writeFile(join(spoolDir, failedNote(n)), (e as Error)?.message ?? String(e)).catch(() => undefined);
        return 'failed';
      } finally {
        if (buffer) buffers.push(buffer);
      }
    };
    if (options.queueBytes === undefined || names.length === 0) {
      const results = await Promise.all(names.map((n) => limit(() => fetchTo(n))));
      const done: string[] = [];
      for (let i = 0; i < names.length && results[i] === 'spooled'; i++) done.push(names[i]!);
      return done;
    }
    return await followRequests(spoolDir, names[0]!, options.segmentBytes ?? 16 * 1024 * 1024, options.queueBytes, options.idleExitMs ?? 60_000, options.lingerMs ?? PREFETCH_LINGER_MS, limit, fetchTo);
  } finally {
    // Its notes (and the copy of the last segment it kept) go before its lock: restore_command trusts a
    // note only while a prefetcher holds the spool.
    await clearNotes(spoolDir, (await readFile(join(spoolDir, SPOOL_WANTED), 'utf8').catch(() => '')).trim());
    await rm(join(spoolDir, PREFETCH_LOCK), { force: true });
  }
}

/** The note on a file the prefetcher found not archived, as of its look: restore_command asks the store itself at once rather than wait. */
function absentNote(name: string): string {
  return `.${name}.absent`;
}

/** The note on a file the prefetcher could not fetch (what went wrong): restore_command fetches it itself at once rather than wait. */
function failedNote(name: string): string {
  return `.${name}.failed`;
}

/** The note on the archive's last segment: restore_command copies it into place and leaves it, as recovery asks for it twice. */
function keepNote(name: string): string {
  return `.${name}.keep`;
}

/**
 * How long a prefetcher stays after it reached the archive's end and
 * recovery last asked for something: recovery goes on through what is
 * spooled, and asks for the last segment once more as it ends, which is
 * served from the spool only while a prefetcher holds it.
 */
const PREFETCH_LINGER_MS = 5_000;

/**
 * Removes the prefetcher's notes, and the segment a keep note named when
 * recovery has had it (it asked for it, or for a later one: `wanted`).
 */
async function clearNotes(spoolDir: string, wanted = ''): Promise<void> {
  for (const n of await readdir(spoolDir).catch(() => [] as string[])) {
    if (!n.startsWith('.')) continue;
    if (n.endsWith('.keep')) {
      await rm(join(spoolDir, n), { force: true });
      const kept = n.slice(1, -'.keep'.length);
      if (WAL_SEGMENT.test(wanted) && kept.slice(0, 8) === wanted.slice(0, 8) && kept <= wanted) await rm(join(spoolDir, kept), { force: true });
    } else if (n.endsWith('.failed') || n.endsWith('.absent')) await rm(join(spoolDir, n), { force: true });
  }
}

/**
 * The long-lived prefetcher's loop: keeps the segments after the last one
 * asked for (SPOOL_WANTED) spooled, up to `queueBytes`, in order, a few at
 * once; follows the requests to another timeline or past it. At the
 * archive's end it spools the last segment again (recovery reads it once
 * more as it ends) and looks up the next timeline's history file, then
 * lingers; it stops when idle, or when the spool is gone.
 */
async function followRequests(
  spoolDir: string,
  first: string,
  segmentBytes: number,
  queueBytes: number,
  idleExitMs: number,
  lingerMs: number,
  limit: ReturnType<typeof pLimit>,
  fetchTo: (n: string, again?: boolean) => Promise<'spooled' | 'absent' | 'failed'>,
): Promise<string[]> {
  const spooled: string[] = [];
  let cursor = first;
  let wanted = '';
  let heard = performance.now();
  let ended = false;
  /** The first segment found absent in this run to the end, and when the end's work was done. */
  let end: string | undefined;
  let endedAt: number | undefined;
  let inFlight = 0;
  for (;;) {
    const asked = await readFile(join(spoolDir, SPOOL_WANTED), 'utf8').catch(() => undefined);
    if (asked === undefined && (await fileSize(spoolDir)) === undefined) break;
    const now = asked?.trim() ?? '';
    if (now !== wanted && WAL_SEGMENT.test(now)) {
      wanted = now;
      heard = performance.now();
      // Asked past what is spooled, or on another timeline: go on from there.
      if (now.slice(0, 8) !== cursor.slice(0, 8) || now >= cursor) {
        cursor = nextSegment(now, segmentBytes);
        ended = false;
        end = undefined;
        endedAt = undefined;
      }
    }
    const ahead = (await readdir(spoolDir).catch(() => [] as string[])).filter((n) => WAL_SEGMENT.test(n) && (!wanted || (n.slice(0, 8) === wanted.slice(0, 8) && n > wanted))).length;
    while (!ended && (ahead + inFlight + 1) * segmentBytes <= queueBytes) {
      const name = cursor;
      cursor = nextSegment(cursor, segmentBytes);
      inFlight++;
      void limit(async () => {
        const r = await fetchTo(name);
        inFlight--;
        if (r === 'spooled') spooled.push(name);
        else if (r === 'absent') {
          ended = true;
          if (end === undefined || name < end) end = name;
        }
      });
      if ((ahead + inFlight + 1) * segmentBytes > queueBytes) break;
    }
    if (ended && inFlight === 0 && endedAt === undefined) {
      if (end !== undefined) await endOfArchive(spoolDir, end, segmentBytes, fetchTo);
      endedAt = performance.now();
    }
    // Staying while recovery still asks: it may be segments behind the end yet.
    if ((endedAt !== undefined && performance.now() - Math.max(endedAt, heard) > lingerMs) || performance.now() - heard > idleExitMs) break;
    await new Promise((r) => setTimeout(r, 20));
  }
  while (inFlight > 0) await new Promise((r) => setTimeout(r, 20));
  return spooled;
}

/**
 * What recovery asks for once it has replayed the last archived segment
 * before `absent`: that segment again (kept in the spool when served, or
 * spooled anew if it was handed over already), and the history files of the
 * next timeline and of this one (spooled when archived).
 */
async function endOfArchive(spoolDir: string, absent: string, segmentBytes: number, fetchTo: (n: string, again?: boolean) => Promise<'spooled' | 'absent' | 'failed'>): Promise<void> {
  const number = segmentNumber(absent, segmentBytes);
  const last = number > 0n ? segmentName(parseInt(absent.slice(0, 8), 16), number - 1n, segmentBytes) : undefined;
  if (last !== undefined && ((await fileSize(join(spoolDir, last))) !== undefined || (await fetchTo(last, true)) === 'spooled')) await writeFile(join(spoolDir, keepNote(last)), '');
  // Ending, recovery picks the next timeline, and copies the history of the one it leaves (PostgreSQL asks for
  // that file even for timeline 1, which has none: wal-fetch answers that call without the store).
  const timeline = parseInt(absent.slice(0, 8), 16);
  for (const tli of [timeline + 1, timeline]) {
    const history = historyName(tli);
    if (!neverArchived(history)) await fetchTo(history, true);
  }
}

/** Spooled segments that sort before `name` on its timeline will never be asked for again. */
async function clearStaleSpool(spool: string, name: string): Promise<void> {
  const names = await readdir(spool).catch(() => [] as string[]);
  for (const n of names) {
    // A temporary file is of the segment its name begins with: one of a later segment is a live prefetcher's
    // write in flight, and removing it would fail that fetch.
    const of = n.endsWith(TMP_SUFFIX) ? n.slice(1).split('.')[0]! : n;
    if (WAL_SEGMENT.test(of) && of.slice(0, 8) === name.slice(0, 8) && of < name) await rm(join(spool, n), { force: true });
  }
}

/** Every archived WAL record key (both layouts). */
export async function listWalKeys(repo: Repository): Promise<string[]> {
  return (await repo.objects.list(WAL_PREFIX)).map((o) => o.key).sort();
}

/**
 * The scope restore_command fetches for: the stanza, and the system
 * identifier given (a restore writes the backup's), else the one in
 * `global/pg_control` of `pgdata` (restore_command runs in the data
 * directory), else the stanza's current one. A format 1 repository with no
 * stanza yet serves its legacy WAL for any system identifier given.
 */
export async function walFetchScope(repo: Repository, stanza: string, systemIdentifier: string | undefined, pgdata: string): Promise<WalScope> {
  const sysid = systemIdentifier ?? (await readControlSystemIdentifier(pgdata));
  const record = await readStanza(repo, stanza);
  if (!record) {
    if (repo.config.format === 1 && sysid) return { stanza, systemIdentifier: sysid };
    await requireStanza(repo, stanza);
  }
  if (!sysid) return { stanza, systemIdentifier: currentIdentity(record!).systemIdentifier };
  if (!stanzaHasSystem(record!, sysid)) throw new StanzaMismatchError(stanza, `has no cluster with system identifier ${sysid} in its history`);
  return { stanza, systemIdentifier: sysid };
}
