/**
 * One key space kept in several stores at once: a repository and its mirrors
 * in other regions, which WAL is written to directly so that losing a region
 * loses at most the RPO, not the mirror's lag.
 *
 * Writes go to every store and succeed only when every store holds the
 * object: an archive_command that exits 0 has the file in each region.
 * Reads ask the stores in order (the nearest first) and move on when one
 * answers absent or cannot answer; an object is absent only when every store
 * says so, and when one could not answer and none had it, the read fails
 * instead (a restore_command must never call a file missing that a store it
 * could not reach may hold).
 */
import pLimit from 'p-limit';
import { MissingObjectError, StoreUnavailableError } from '../errors.js';
import type { ByteRange, ObjectInfo, ObjectStore, PutOutcome, StoreProperties } from './object-store.js';

/** How long a store that could not be reached is passed over by reads before it is asked again. */
const UNREACHABLE_MS = 30_000;

export class ReplicatedStore implements ObjectStore {
  readonly properties: StoreProperties;
  /** The first is read first: the nearest. */
  readonly stores: readonly ObjectStore[];

  private readonly lists: 'every' | 'answered';

  /**
   * `lists`: whether a listing needs every store to answer (`every`, for
   * writers, the default) or lists what the stores that answered hold
   * (`answered`, for readers while a region is lost: whatever was
   * acknowledged is in each store, so any one of them lists all of that).
   */
  constructor(stores: readonly ObjectStore[], options: { lists?: 'every' | 'answered' } = {}) {
    if (stores.length === 0) throw new TypeError('a replicated store needs at least one store');
    this.stores = stores;
    this.lists = options.lists ?? 'every';
    this.properties = {
      connections: Math.min(...stores.map((s) => s.properties.connections)),
      location: stores.map((s) => s.properties.location).join(' + '),
    };
  }

  async put(key: string, data: Uint8Array): Promise<PutOutcome> {
    const outcomes = await everywhere(this.stores.map((s) => s.put(key, data)));
    return outcomes.includes('created') ? 'created' : 'existed';
  }

  async get(key: string, range?: ByteRange): Promise<Uint8Array> {
    return this.firstAnswer(async (s) => {
      try {
        return await s.get(key, range);
      } catch (e) {
        if (e instanceof MissingObjectError) return undefined;
        throw e;
      }
    }).then((found) => {
      if (found === undefined) throw new MissingObjectError(key, `not found in any of ${this.properties.location}`);
      return found;
    });
  }

  head(key: string): Promise<ObjectInfo | undefined> {
    return this.firstAnswer((s) => s.head(key));
  }

  /** `key` from every store, as each answered (one that could not be reached is then passed over by reads for a while). */
  async getEach(key: string): Promise<PromiseSettledResult<Uint8Array>[]> {
    const settled = await Promise.allSettled(this.stores.map((s) => s.get(key)));
    settled.forEach((r, i) => {
      if (r.status === 'rejected' && r.reason instanceof StoreUnavailableError) this.unreachable.set(i, { since: Date.now(), error: r.reason });
    });
    return settled;
  }

  /** Every key some store holds (once); see the constructor for a store that cannot list. */
  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    const listing = this.stores.map(async (s) => {
      const out: ObjectInfo[] = [];
      for await (const o of s.list(prefix)) out.push(o);
      return out;
    });
    const lists = this.lists === 'every' ? await everywhere(listing) : await answered(listing);
    const seen = new Set<string>();
    for (const list of lists) {
      for (const o of list) {
        if (seen.has(o.key)) continue;
        seen.add(o.key);
        yield o;
      }
    }
  }

  async delete(key: string): Promise<void> {
    await everywhere(this.stores.map((s) => s.delete(key)));
  }

  /**
   * Copies each of `keys` to the stores that lack it, from the nearest that
   * holds it: an object written before a store was added, or by a write that
   * reached only some of them. Resolves the number of copies made.
   */
  async replicate(keys: readonly string[]): Promise<number> {
    const limit = pLimit(Math.max(1, Math.min(8, this.properties.connections)));
    const copies = await Promise.all(
      keys.map((key) =>
        limit(async () => {
          const held = await everywhere(this.stores.map((s) => s.head(key)));
          const from = held.findIndex((h) => h !== undefined);
          if (from < 0) throw new MissingObjectError(key, `not found in any of ${this.properties.location}`);
          const lacking = this.stores.filter((_, i) => held[i] === undefined);
          if (lacking.length === 0) return 0;
          const data = await this.stores[from]!.get(key);
          await everywhere(lacking.map((s) => s.put(key, data)));
          return lacking.length;
        }),
      ),
    );
    return copies.reduce((a, b) => a + b, 0);
  }

  /**
   * The first store's answer that is not "absent"; undefined when all say
   * absent; the first failure when one failed and none had it. A store that
   * could not be reached is not asked again for a while (each try rides out
   * the store's own retries): it counts as failed meanwhile, so an object
   * the others lack is still never called absent.
   */
  private async firstAnswer<T>(ask: (s: ObjectStore) => Promise<T | undefined>): Promise<T | undefined> {
    let failure: unknown;
    for (const [i, s] of this.stores.entries()) {
      const down = this.unreachable.get(i);
      if (down && Date.now() - down.since < UNREACHABLE_MS) {
        failure ??= down.error;
        continue;
      }
      try {
        const answer = await ask(s);
        this.unreachable.delete(i);
        if (answer !== undefined) return answer;
      } catch (e) {
        if (e instanceof StoreUnavailableError) this.unreachable.set(i, { since: Date.now(), error: e });
        failure ??= e;
      }
    }
    if (failure !== undefined) throw failure;
    return undefined;
  }

  /** Stores (by position) that could not be reached, since when, and how they failed. */
  private readonly unreachable = new Map<number, { since: number; error: unknown }>();
}

/** Every promise's value, once all have settled; the first failure (in store order) if any failed. */
async function everywhere<T>(work: readonly Promise<T>[]): Promise<T[]> {
  const settled = await Promise.allSettled(work);
  const failed = settled.find((s): s is PromiseRejectedResult => s.status === 'rejected');
  if (failed) throw failed.reason;
  return settled.map((s) => (s as PromiseFulfilledResult<T>).value);
}

/** The values of the promises that were fulfilled; the first failure when none was. */
async function answered<T>(work: readonly Promise<T>[]): Promise<T[]> {
  const settled = await Promise.allSettled(work);
  const values = settled.flatMap((s) => (s.status === 'fulfilled' ? [s.value] : []));
  if (values.length === 0) throw (settled[0] as PromiseRejectedResult).reason;
  return values;
}
