/**
 * Two local keys of the same kind (two key files) carry the same name in a
 * wrapping ("local/key-file"): the key ring tells them apart by opening.
 * Adding the second really wraps every data key, so it opens the
 * repository alone; a rotation wraps the new key for both when both are
 * given, and refuses, naming the wrapping, when one is missing — never
 * silently leaving a key holder out of new data.
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backupFiles, InvalidArgumentError, LocalKeyProvider, MemoryStore, Repository, restoreBackup } from '@coffer/engine';
import { scratch, snapshot } from '../../../test/support/tree.js';

let work: { dir: string; cleanup: () => Promise<void> };
beforeAll(async () => {
  work = await scratch('coffer-key-ring-');
});
afterAll(async () => work.cleanup());

async function keyFile(name: string): Promise<LocalKeyProvider> {
  const path = join(work.dir, name);
  await writeFile(path, LocalKeyProvider.newKeyFileContent(), { mode: 0o600 });
  return LocalKeyProvider.fromKeyFile(path);
}

describe('two key files', () => {
  it('the second is really added, opens alone, and rotation keeps it or refuses by name', async () => {
    const store = new MemoryStore();
    const a = await keyFile('a');
    const b = await keyFile('b');
    const repo = await Repository.init(store, a);
    const added = await repo.keyRing.addWrapping(b);
    expect(added?.keyIds).toEqual([1]);
    expect(added?.wrapping).toBe('local/key-file');
    // Adding it again finds it there.
    expect(await (await Repository.open(store, a)).keyRing.addWrapping(b)).toBeUndefined();
    expect((await Repository.open(store, b)).keyRing.currentKeyId).toBe(1);

    const byA = await Repository.open(store, a);
    const refused = await byA.keyRing.rotationProviders(() => [a]).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(InvalidArgumentError);
    expect((refused as Error).message).toContain('local/key-file');
    const { providers } = await byA.keyRing.rotationProviders(() => [a, b]);
    expect(providers).toHaveLength(2);
    await byA.keyRing.rotate(providers);

    // Data written under the new key opens with either file alone.
    const src = join(work.dir, 'src');
    await mkdir(src);
    await writeFile(join(src, 'f'), 'after rotation');
    const written = await Repository.open(store, a);
    expect(written.keyRing.currentKeyId).toBe(2);
    const { key } = await backupFiles(written, src);
    for (const [name, p] of [['a', a], ['b', b]] as const) {
      const r = await Repository.open(store, p);
      expect(r.keyRing.currentKeyId, name).toBe(2);
      const out = join(work.dir, `out-${name}`);
      await restoreBackup(r, key, out);
      expect(await snapshot(out)).toEqual(await snapshot(src));
    }
  });
});

describe('key remove', () => {
  it('a removed key file opens nothing; the rotation after it wraps the new key for the keys that stay; lockouts are refused', async () => {
    const store = new MemoryStore();
    const leaked = await keyFile('leaked');
    const kept = await keyFile('kept');
    const repo = await Repository.init(store, leaked);
    const src = join(work.dir, 'remove-src');
    await mkdir(src);
    await writeFile(join(src, 'f'), 'before the leak');
    const before = (await backupFiles(repo, src)).key;

    // Only key: refused, naming it. Opened with the leaked key itself: refused.
    const alone = await repo.keyRing.removeWrappings((w) => repo.keyRing.isOpenedBy(leaked, w), 'leaked').catch((e: unknown) => e);
    expect(alone).toBeInstanceOf(InvalidArgumentError);
    expect((alone as Error).message).toMatch(/leaked is the only key that wraps data key 1/);
    await repo.keyRing.addWrapping(kept);
    const byLeaked = await Repository.open(store, leaked);
    await expect(byLeaked.keyRing.removeWrappings((w) => byLeaked.keyRing.isOpenedBy(leaked, w), 'leaked')).rejects.toThrow(/opened with leaked itself/);
    // A key that wraps nothing here: refused.
    const stranger = await keyFile('stranger');
    const byKept = await Repository.open(store, kept);
    await expect(byKept.keyRing.removeWrappings((w) => byKept.keyRing.isOpenedBy(stranger, w), 'stranger')).rejects.toThrow(/wraps no data key/);

    const removed = await byKept.keyRing.removeWrappings((w) => byKept.keyRing.isOpenedBy(leaked, w), 'leaked');
    expect(removed.keyIds).toEqual([1]);
    await expect(Repository.open(store, leaked)).rejects.toMatchObject({ code: 'COFFER_WRONG_KEY' });
    const reopened = await Repository.open(store, kept);
    expect(reopened.keyRing.status().map((s) => s.wrappedBy)).toEqual([['local/key-file']]);
    // The rotation needs only the key that stays, and wraps the new data key for it alone.
    const { providers } = await reopened.keyRing.rotationProviders(() => [kept]);
    expect((await reopened.keyRing.rotate(providers)).keyId).toBe(2);
    const rotated = await Repository.open(store, kept);
    expect(rotated.keyRing.status().map((s) => [s.id, s.current, s.wrappedBy])).toEqual([
      [1, false, ['local/key-file']],
      [2, true, ['local/key-file']],
    ]);
    await writeFile(join(src, 'f'), 'after the rotation');
    const after = (await backupFiles(rotated, src)).key;
    for (const [key, text] of [[before, 'before the leak'], [after, 'after the rotation']] as const) {
      const out = join(work.dir, `remove-out-${text.length}`);
      await restoreBackup(rotated, key, out);
      expect(await readFile(join(out, 'f'), 'utf8')).toBe(text);
    }
  });
});
