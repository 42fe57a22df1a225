/**
 * WAL written to a repository and its mirrors at once (`ReplicatedStore`,
 * `openReplicas`): a write is acknowledged only when every store holds it,
 * a read finds a file in whichever store holds it, and "absent" is said only
 * when every store said so.
 */
import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  collectList,
  fetchWalBytes,
  InvalidArgumentError,
  LocalKeyProvider,
  MemoryStore,
  MissingObjectError,
  openReplicas,
  ReplicatedStore,
  Repository,
  StoreUnavailableError,
  walPush,
  type ByteRange,
  type ObjectInfo,
  type ObjectStore,
  type PutOutcome,
} from '@coffer/engine';
import { describeObjectStore } from '@coffer/engine/testing';
import { ForwardingStore } from '../../../test/support/forwarding-store.js';
import { scratchWithKey } from '../../../test/support/keys.js';
import { fakeCluster, segment, segmentName } from '../../../test/support/wal.js';

/** A store that can be cut off: every request then fails as an unreachable region's would. */
class Region extends ForwardingStore {
  down = false;
  /** Writes of the keys it picks fail as if the region went down then. */
  refuses: (key: string) => boolean = () => false;
  private check(key: string): void {
    if (this.down) throw new StoreUnavailableError(key, 'connection refused (region lost)');
  }
  override async put(key: string, data: Uint8Array): Promise<PutOutcome> {
    this.check(key);
    if (this.refuses(key)) throw new StoreUnavailableError(key, 'connection reset (region lost)');
    return super.put(key, data);
  }
  override async get(key: string, range?: ByteRange): Promise<Uint8Array> {
    this.check(key);
    return super.get(key, range);
  }
  override async head(key: string): Promise<ObjectInfo | undefined> {
    this.check(key);
    return super.head(key);
  }
  override async *list(prefix: string): AsyncIterable<ObjectInfo> {
    this.check(prefix);
    yield* super.list(prefix);
  }
  override async delete(key: string): Promise<void> {
    this.check(key);
    return super.delete(key);
  }
}

/** What `coffer mirror` leaves: every object of `from` in `to`. */
async function copyAll(from: ObjectStore, to: ObjectStore): Promise<void> {
  for (const o of await collectList(from, '')) await to.put(o.key, await from.get(o.key));
}

describeObjectStore('ReplicatedStore', async () => ({ store: new ReplicatedStore([new MemoryStore(), new MemoryStore(), new MemoryStore()]) }));

describe('ReplicatedStore', () => {
  it('reads from the first store holding an object; absent only when all say absent; a failure when one could not answer and none held it', async () => {
    type State = 'holds' | 'absent' | 'down';
    await fc.assert(
      fc.asyncProperty(fc.array(fc.constantFrom<State>('holds', 'absent', 'down'), { minLength: 1, maxLength: 4 }), async (states) => {
        const regions = states.map(() => new Region(new MemoryStore()));
        for (const [i, s] of states.entries()) if (s === 'holds') await regions[i]!.put('wal/x', Buffer.from(`copy ${i}`));
        states.forEach((s, i) => (regions[i]!.down = s === 'down'));
        const store = new ReplicatedStore(regions);
        const first = states.indexOf('holds');
        const get = store.get('wal/x').then((b) => Buffer.from(b).toString(), (e: unknown) => e);
        const head = store.head('wal/x').then((h) => h?.size, (e: unknown) => e);
        if (first >= 0) {
          expect(await get).toBe(`copy ${first}`);
          expect(await head).toBe(`copy ${first}`.length);
        } else if (states.includes('down')) {
          expect(await get).toBeInstanceOf(StoreUnavailableError);
          expect(await head).toBeInstanceOf(StoreUnavailableError);
        } else {
          expect(await get).toBeInstanceOf(MissingObjectError);
          expect(await head).toBeUndefined();
        }
      }),
      { numRuns: 200 },
    );
  });

  it('a write succeeds only when every store holds it; replicate copies what a store lacks', async () => {
    const [a, b] = [new Region(new MemoryStore()), new Region(new MemoryStore())];
    const store = new ReplicatedStore([a, b]);
    b.down = true;
    await expect(store.put('data/aa/p1', Buffer.from('pack'))).rejects.toBeInstanceOf(StoreUnavailableError);
    expect(await a.head('data/aa/p1')).toBeDefined();
    // Listing needs every store: the union of those that answered could be short.
    await expect(collectList(store, 'data/')).rejects.toBeInstanceOf(StoreUnavailableError);
    b.down = false;
    expect(await store.replicate(['data/aa/p1'])).toBe(1);
    expect(Buffer.from(await b.get('data/aa/p1')).toString()).toBe('pack');
    expect(await store.replicate(['data/aa/p1'])).toBe(0);
    await expect(store.replicate(['data/aa/nowhere'])).rejects.toBeInstanceOf(MissingObjectError);
    expect(await store.put('data/aa/p1', Buffer.from('pack'))).toBe('existed');
  });
});

describe('WAL written to a repository and its mirror', () => {
  let work: { dir: string; cleanup: () => Promise<void> };
  let keys: LocalKeyProvider;
  const SYS = 7_300_000_000_000_000_321n;
  const SEG = 1024 * 1024;
  beforeAll(async () => {
    ({ work, keys } = await scratchWithKey('coffer-wal-replicas-'));
  });
  afterAll(async () => {
    await work.cleanup();
  });

  it('opening refuses a mirror that is not a copy of the repository, for writing; a reader goes on without an absent or unreachable one', async () => {
    const a = new Region(new MemoryStore());
    await Repository.init(a, keys);
    const empty = new Region(new MemoryStore());
    await expect(openReplicas([a, empty], { writer: true, what: '--wal-mirror' })).rejects.toThrow(/holds no repository: make it a copy/);
    const other = new MemoryStore();
    await Repository.init(other, keys);
    const refused = await openReplicas([a, other], { writer: false, what: '--wal-mirror' }).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(InvalidArgumentError);
    expect((refused as Error).message).toMatch(/holds another repository/);
    empty.down = true;
    await expect(openReplicas([a, empty], { writer: true })).rejects.toBeInstanceOf(StoreUnavailableError);
    expect(await openReplicas([a, empty], { writer: false })).toBeInstanceOf(ReplicatedStore);
  });

  it('a segment is durable in both; pushed again after the mirror was down, it is copied there; the mirror alone reads it back', async () => {
    const [a, b] = [new Region(new MemoryStore()), new Region(new MemoryStore())];
    await Repository.init(a, keys);
    await copyAll(a, b);
    // A key rotated since the mirror was made: opening for writing copies the key ring's new objects.
    await (await Repository.open(a, keys)).keyRing.rotate([keys]);
    const repo = await Repository.open(await openReplicas([a, b], { writer: true }), keys);
    expect((await collectList(b, 'keys/')).length).toBe((await collectList(a, 'keys/')).length);

    const pgdata = await fakeCluster(join(work.dir, 'pg'), SYS);
    const files: Buffer[] = [];
    for (let n = 1; n <= 3; n++) {
      const seg = segment(SYS, n, SEG);
      randomBytes(SEG - 8192).copy(seg, 8192);
      await writeFile(join(pgdata, 'pg_wal', segmentName(n)), seg);
      files.push(seg);
    }
    const scope = { stanza: 'main', systemIdentifier: SYS.toString() };
    const path = (n: number) => join(pgdata, 'pg_wal', segmentName(n));
    expect((await walPush(repo, path(1))).outcome).toBe('archived');

    // The mirror refuses the record (its region went down after the packs): the push fails, so archive_command
    // keeps the file, though the repository has it whole.
    b.refuses = (key) => key.startsWith('wal/');
    await expect(walPush(repo, path(2))).rejects.toBeInstanceOf(StoreUnavailableError);
    b.refuses = () => false;
    expect(await b.head(`wal/main/${SYS}/1/${segmentName(2)}`)).toBeUndefined();
    // PostgreSQL calls again: archived already in the repository, its record and packs are copied to the mirror.
    expect((await walPush(repo, path(2))).outcome).toBe('already-archived');
    expect((await walPush(repo, path(3))).outcome).toBe('archived');

    // The repository's region is lost: the mirror alone holds every segment byte for byte.
    const mirrorOnly = await Repository.open(b, keys);
    for (let n = 1; n <= 3; n++) expect((await fetchWalBytes(mirrorOnly, scope, segmentName(n)))?.equals(files[n - 1]!)).toBe(true);
    // And read through both with the repository unreachable, the mirror answers.
    a.down = true;
    const reader = await Repository.open(await openReplicas([a, b], { writer: false }), keys);
    expect((await fetchWalBytes(reader, scope, segmentName(3)))?.equals(files[2]!)).toBe(true);
    // A segment neither holds, with one store unreachable, is not called absent.
    await expect(fetchWalBytes(reader, scope, segmentName(9))).rejects.toBeInstanceOf(StoreUnavailableError);
    // Back, it is asked again (by a new process; a running one passes it over for half a minute): both say absent.
    a.down = false;
    await expect(fetchWalBytes(reader, scope, segmentName(9))).rejects.toBeInstanceOf(StoreUnavailableError);
    const later = await Repository.open(await openReplicas([a, b], { writer: false }), keys);
    expect(await fetchWalBytes(later, scope, segmentName(9))).toBeUndefined();
  });
});
