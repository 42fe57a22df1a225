import { readFile, rm, stat, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  backupFiles,
  checkRepository,
  CorruptObjectError,
  FileStore,
  LocalKeyProvider,
  MissingObjectError,
  Repository,
  restoreBackup,
  WrongKeyError,
  type BackupManifest,
} from '@coffer/engine';
import { pseudoRandom, scratch, writeTree } from '../../../test/support/tree.js';

const provider = LocalKeyProvider.fromPassphrase('corruption tests');
let work: { dir: string; cleanup: () => Promise<void> };
let repoDir: string;
let repo: Repository;
let manifest: BackupManifest;
let packKeys: string[];
/** pack key → files (paths) holding at least one of its chunks. */
const filesByPack = new Map<string, string[]>();
let outN = 0;

beforeAll(async () => {
  work = await scratch('coffer-corrupt-');
  const src = join(work.dir, 'src');
  await writeTree(src, [
    ...Array.from({ length: 8 }, (_, i) => ({ kind: 'file' as const, name: `data${i}.bin`, content: pseudoRandom(90_000 + i * 7000, i + 1), mode: 0o644, mtimeMs: 1_600_000_000_000 })),
    { kind: 'file', name: 'notes.txt', content: Buffer.from('compressible text\n'.repeat(5000)), mode: 0o600, mtimeMs: 1_600_000_000_000 },
  ]);
  repoDir = join(work.dir, 'repo');
  repo = await Repository.init(new FileStore(repoDir), provider, { chunker: { minSize: 2048, avgSize: 8192, maxSize: 32768 }, packSize: 128 * 1024 });
  manifest = (await backupFiles(repo, src)).manifest;
  packKeys = (await repo.objects.list('data/')).map((o) => o.key).sort();
  for (const key of await repo.listIndexKeys()) {
    for (const pack of await repo.readIndexObject(key)) {
      const ids = new Set(pack.entries.map((e) => e.id.toString('hex')));
      filesByPack.set(`data/${pack.sha.slice(0, 2)}/${pack.sha}`, manifest.entries.filter((e) => e.chunks?.some((c) => ids.has(c))).map((e) => e.path));
    }
  }
});
afterAll(async () => work.cleanup());

async function flipByte(key: string, offset: number): Promise<() => Promise<void>> {
  const path = join(repoDir, ...key.split('/'));
  const original = await readFile(path);
  const damaged = Buffer.from(original);
  damaged[offset] = damaged[offset]! ^ 0xff;
  await writeFile(path, damaged);
  return () => writeFile(path, original);
}

describe('corruption is detected and named', () => {
  it('the test repository has several packs', () => {
    expect(packKeys.length).toBeGreaterThanOrEqual(5);
    expect(filesByPack.size).toBe(packKeys.length);
  });

  it('flipping one byte anywhere in any pack fails check --read-data and restore, naming the pack and affected files', async () => {
    await fc.assert(
      fc.asyncProperty(fc.nat(), fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }), async (which, where) => {
        const key = packKeys[which % packKeys.length]!;
        const size = (await stat(join(repoDir, ...key.split('/')))).size;
        const undo = await flipByte(key, Math.floor(where * size));
        try {
          const report = await checkRepository(repo, { readData: true });
          expect(report.ok).toBe(false);
          expect(report.problems.map((p) => [p.constructor.name, (p as CorruptObjectError).key])).toEqual([['CorruptObjectError', key]]);

          const out = join(work.dir, `out-${outN++}`);
          const err = await restoreBackup(repo, 'latest', out).catch((e: unknown) => e);
          expect(err).toBeInstanceOf(CorruptObjectError);
          const c = err as CorruptObjectError;
          expect(c.key).toBe(key);
          expect(c.message).toContain(key);
          expect([...c.affectedFiles].sort()).toEqual([...filesByPack.get(key)!].sort());
          expect(c.affectedFiles.length).toBeGreaterThan(0);
          await rm(out, { recursive: true, force: true });
        } finally {
          await undo();
        }
      }),
      { numRuns: 30 },
    );
    expect((await checkRepository(repo, { readData: true })).ok).toBe(true);
  });

  it('without --read-data, check still finds a deleted pack; restore names it and the files that need it', async () => {
    const key = packKeys[1]!;
    const path = join(repoDir, ...key.split('/'));
    const saved = await readFile(path);
    await unlink(path);
    try {
      const report = await checkRepository(repo);
      expect(report.problems.map((p) => [p.code, (p as MissingObjectError).key])).toEqual([['COFFER_MISSING_OBJECT', key]]);
      const err = await restoreBackup(repo, 'latest', join(work.dir, `out-${outN++}`)).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(MissingObjectError);
      expect((err as MissingObjectError).key).toBe(key);
      expect([...(err as MissingObjectError).affectedFiles].sort()).toEqual([...filesByPack.get(key)!].sort());
    } finally {
      await writeFile(path, saved);
    }
  });

  it('a damaged index or manifest is reported by name', async () => {
    for (const key of [(await repo.listIndexKeys())[0]!, (await repo.listBackupKeys())[0]!]) {
      const undo = await flipByte(key, 40);
      try {
        const report = await checkRepository(repo);
        expect(report.problems.some((p) => p instanceof CorruptObjectError && p.key === key)).toBe(true);
      } finally {
        await undo();
      }
    }
  });

  it('a wrong passphrase fails with WrongKeyError before anything is read or written', async () => {
    const err = await Repository.open(new FileStore(repoDir), LocalKeyProvider.fromPassphrase('not it')).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(WrongKeyError);
    expect((err as WrongKeyError).code).toBe('COFFER_WRONG_KEY');
    expect((err as Error).message).not.toContain('not it');
  });
});
