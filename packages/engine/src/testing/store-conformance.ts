/**
 * The conformance suite every `ObjectStore` must pass. A store package calls
 * `describeObjectStore('S3Store', factory)` from its own vitest file; the
 * factory returns a fresh, empty store each time.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { InvalidArgumentError, MissingObjectError, ObjectConflictError } from '../errors.js';
import { collectList, type ObjectStore } from '../store/object-store.js';

/** A store that tells when an object was written tells it right: within a few seconds of the put (S3 keeps whole seconds). */
function expectWrittenAround(modified: Date | undefined, putAt: number): void {
  if (modified === undefined) return;
  expect(modified).toBeInstanceOf(Date);
  expect(Math.abs(modified.getTime() - putAt)).toBeLessThan(5000);
}

export type StoreFactory = () => Promise<{ store: ObjectStore; cleanup?: () => Promise<void> }>;

export function describeObjectStore(name: string, factory: StoreFactory): void {
  describe(`ObjectStore conformance: ${name}`, () => {
    const withStore = async (fn: (s: ObjectStore) => Promise<void>) => {
      const { store, cleanup } = await factory();
      try {
        await fn(store);
      } finally {
        await cleanup?.();
      }
    };

    it('put then get returns the same bytes; head reports the size', () =>
      withStore(async (s) => {
        const data = Buffer.from('hello, coffer');
        const before = Date.now();
        expect(await s.put('data/ab/obj1', data)).toBe('created');
        expect(Buffer.from(await s.get('data/ab/obj1')).equals(data)).toBe(true);
        const info = await s.head('data/ab/obj1');
        expect(info).toMatchObject({ key: 'data/ab/obj1', size: data.length });
        expectWrittenAround(info!.modified, before);
        const [listed] = await collectList(s, 'data/ab/');
        expectWrittenAround(listed!.modified, before);
      }));

    it('the bytes get returns belong to the caller: changing them changes nothing stored', () =>
      withStore(async (s) => {
        const data = Buffer.from('sealed bytes a reader decrypts over themselves');
        await s.put('index/owned', data);
        for (const range of [undefined, { offset: 3, length: 10 }]) {
          const got = await s.get('index/owned', range);
          got.fill(0);
        }
        expect(Buffer.from(await s.get('index/owned')).equals(data)).toBe(true);
      }));

    it('an empty object round-trips', () =>
      withStore(async (s) => {
        expect(await s.put('index/empty', new Uint8Array(0))).toBe('created');
        expect((await s.get('index/empty')).byteLength).toBe(0);
        expect(await s.head('index/empty')).toMatchObject({ key: 'index/empty', size: 0 });
      }));

    it('put is create-only: same bytes is "existed", other bytes conflict and keep the original', () =>
      withStore(async (s) => {
        const a = Buffer.from('original');
        await s.put('backups/x', a);
        expect(await s.put('backups/x', Buffer.from('original'))).toBe('existed');
        await expect(s.put('backups/x', Buffer.from('altered!'))).rejects.toBeInstanceOf(ObjectConflictError);
        expect(Buffer.from(await s.get('backups/x')).toString()).toBe('original');
      }));

    it('concurrent puts of one key: exactly one creates, all succeed with same bytes', () =>
      withStore(async (s) => {
        const data = Buffer.alloc(100_000, 7);
        const outcomes = await Promise.all(Array.from({ length: 8 }, () => s.put('data/cc/same', data)));
        expect(outcomes.filter((o) => o === 'created')).toHaveLength(1);
        expect(Buffer.from(await s.get('data/cc/same')).equals(data)).toBe(true);
      }));

    it('concurrent puts of one key with different bytes: one wins, the rest conflict', () =>
      withStore(async (s) => {
        const results = await Promise.allSettled(Array.from({ length: 6 }, (_, i) => s.put('wal/1/seg', Buffer.alloc(50_000, i))));
        const created = results.filter((r) => r.status === 'fulfilled');
        expect(created).toHaveLength(1);
        for (const r of results) if (r.status === 'rejected') expect(r.reason).toBeInstanceOf(ObjectConflictError);
        const stored = Buffer.from(await s.get('wal/1/seg'));
        expect(new Set(stored).size).toBe(1);
      }));

    it('ranged get returns exactly the requested bytes (property)', () =>
      withStore(async (s) => {
        const data = Buffer.from(Array.from({ length: 4096 }, (_, i) => (i * 31 + 7) & 0xff));
        await s.put('data/rr/ranged', data);
        await fc.assert(
          fc.asyncProperty(fc.integer({ min: 0, max: 4096 }), fc.integer({ min: 0, max: 4096 }), async (a, b) => {
            const offset = Math.min(a, b);
            const length = Math.max(a, b) - offset;
            const got = Buffer.from(await s.get('data/rr/ranged', { offset, length }));
            expect(got.equals(data.subarray(offset, offset + length))).toBe(true);
          }),
          { numRuns: 40 },
        );
      }));

    it('a range outside the object is rejected', () =>
      withStore(async (s) => {
        await s.put('data/rr/small', Buffer.alloc(10));
        await expect(s.get('data/rr/small', { offset: 5, length: 6 })).rejects.toBeInstanceOf(InvalidArgumentError);
      }));

    it('get of a missing key rejects with MissingObjectError naming it; head is undefined', () =>
      withStore(async (s) => {
        const err = await s.get('data/zz/none').catch((e: unknown) => e);
        expect(err).toBeInstanceOf(MissingObjectError);
        expect((err as MissingObjectError).key).toBe('data/zz/none');
        expect(await s.head('data/zz/none')).toBeUndefined();
      }));

    it('list returns exactly the keys under a prefix, across "directories"', () =>
      withStore(async (s) => {
        const keys = ['data/00/a', 'data/00/b', 'data/01/c', 'index/i1', 'backups/b1', 'config'];
        for (const k of keys) await s.put(k, Buffer.from(k));
        const listed = async (p: string) => (await collectList(s, p)).map((o) => o.key).sort();
        expect(await listed('data/')).toEqual(['data/00/a', 'data/00/b', 'data/01/c']);
        expect(await listed('data/00/')).toEqual(['data/00/a', 'data/00/b']);
        expect(await listed('index/')).toEqual(['index/i1']);
        expect(await listed('')).toEqual([...keys].sort());
        expect(await listed('nothing/')).toEqual([]);
        const sizes = await collectList(s, 'backups/');
        expect(sizes).toMatchObject([{ key: 'backups/b1', size: 'backups/b1'.length }]);
      }));

    it('list pages through many objects', () =>
      withStore(async (s) => {
        const n = 1100;
        await Promise.all(Array.from({ length: n }, (_, i) => s.put(`index/k${String(i).padStart(5, '0')}`, Buffer.from([i & 0xff]))));
        expect((await collectList(s, 'index/')).length).toBe(n);
      }));

    it('delete removes the object and is idempotent', () =>
      withStore(async (s) => {
        await s.put('locks/l1', Buffer.from('x'));
        await s.delete('locks/l1');
        expect(await s.head('locks/l1')).toBeUndefined();
        await s.delete('locks/l1');
        expect(await collectList(s, 'locks/')).toEqual([]);
        expect(await s.put('locks/l1', Buffer.from('y'))).toBe('created');
      }));

    it('keys that could escape the store are refused', () =>
      withStore(async (s) => {
        for (const bad of ['../x', 'data/../../x', '/abs', 'a//b', 'a/./b', '']) {
          await expect(s.put(bad, Buffer.from('x'))).rejects.toThrow(/invalid object key/);
        }
      }));
  });
}
