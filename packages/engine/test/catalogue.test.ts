/**
 * The backup catalogue: listing reads one small summary per backup, never a
 * manifest; a backup whose summary is missing is summarised from its
 * manifest; a summary moved to another backup's name is refused; and the
 * parent lookup of a backup reads summaries from the newest back, then one
 * manifest; a restore reads its manifest once.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { backupFiles, restoreBackup, LocalKeyProvider, MemoryStore, Repository, type BackupManifest, type ByteRange, type ObjectStore } from '@coffer/engine';
import { scratch } from '../../../test/support/tree.js';

/** A store that counts reads per top-level prefix. */
class CountingStore implements ObjectStore {
  readonly gets = new Map<string, number>();
  constructor(private readonly inner: ObjectStore) {}
  get properties() {
    return this.inner.properties;
  }
  reset(): void {
    this.gets.clear();
  }
  count(prefix: string): number {
    return this.gets.get(prefix) ?? 0;
  }
  put(key: string, data: Uint8Array) {
    return this.inner.put(key, data);
  }
  get(key: string, range?: ByteRange) {
    const prefix = key.includes('/') ? key.slice(0, key.indexOf('/') + 1) : key;
    this.gets.set(prefix, (this.gets.get(prefix) ?? 0) + 1);
    return this.inner.get(key, range);
  }
  head(key: string) {
    return this.inner.head(key);
  }
  list(prefix: string) {
    return this.inner.list(prefix);
  }
  delete(key: string) {
    return this.inner.delete(key);
  }
}

let store: CountingStore;
let repo: Repository;
const root = { path: '.', type: 'dir' as const, mode: 0o700, uid: 0, gid: 0, mtimeNs: '0' };
const stats = { files: 0, dirs: 1, symlinks: 0, bytes: 0, unchangedFiles: 0, newChunks: 0, newBytes: 0, storedBytes: 0, skipped: [] };
const manifest = (i: number): BackupManifest => ({
  format: 2,
  kind: 'files',
  label: `2026010${Math.floor(i / 100)}T0000${String(i % 100).padStart(2, '0')}_000Z`,
  startedAt: new Date(1_767_225_600_000 + i * 1000).toISOString(),
  finishedAt: new Date(1_767_225_600_000 + i * 1000 + 500).toISOString(),
  hostname: 'h',
  source: `/data/${i % 3}`,
  tags: [`n${i}`],
  stats,
  // A manifest of a real backup lists every file and chunk; this one is made large on purpose.
  entries: [root, ...Array.from({ length: 200 }, (_, k) => ({ ...root, path: `d${k}` }))],
});

beforeAll(async () => {
  store = new CountingStore(new MemoryStore());
  repo = await Repository.init(store, LocalKeyProvider.fromPassphrase('catalogue test'));
  for (let i = 0; i < 200; i++) await repo.writeManifest(manifest(i));
});

describe('backup catalogue', () => {
  it('list of 200 backups reads 200 small summaries and no manifest', async () => {
    store.reset();
    const listed = await repo.listBackups();
    expect(listed).toHaveLength(200);
    expect(store.count('catalogue/')).toBe(200);
    expect(store.count('backups/')).toBe(0);
    expect(listed.map((b) => b.tags[0])).toEqual(Array.from({ length: 200 }, (_, i) => `n${i}`));
    expect(listed[7]!.source).toBe('/data/1');
  });

  it('a backup whose summary is missing is summarised from its manifest; a summary under another backup\'s name is refused', async () => {
    const keys = await repo.listBackupKeys();
    const summaryOf = (k: string) => `catalogue/${k.slice('backups/'.length)}`;
    const saved = await store.get(summaryOf(keys[5]!));
    await store.delete(summaryOf(keys[5]!));
    store.reset();
    const listed = await repo.listBackups();
    expect(store.count('backups/')).toBe(1);
    expect(listed[5]!.tags).toEqual(['n5']);
    // Planted: backup 6's summary under backup 5's name. It is refused, and set aside with a warning.
    await store.put(summaryOf(keys[5]!), await store.get(summaryOf(keys[6]!)));
    const warnings: string[] = [];
    repo.onWarning = (w) => warnings.push(w);
    const rest = await repo.listBackups();
    repo.onWarning = () => undefined;
    expect(rest.map((b) => b.key)).not.toContain(keys[5]);
    expect(rest).toHaveLength(199);
    expect(warnings.join('\n')).toContain(`holds the summary of ${keys[6]}`);
    await store.delete(summaryOf(keys[5]!));
    await store.put(summaryOf(keys[5]!), saved);
  });

  it('a backup finds its parent by summaries from the newest back and reads one manifest', async () => {
    const { dir, cleanup } = await scratch('coffer-catalogue-');
    try {
      await mkdir(join(dir, 'src'));
      await writeFile(join(dir, 'src', 'f'), 'content');
      await backupFiles(repo, join(dir, 'src'));
      store.reset();
      const second = await backupFiles(repo, join(dir, 'src'));
      expect(second.manifest.parent).toBeDefined();
      expect(store.count('backups/')).toBe(1);
      expect(store.count('catalogue/')).toBe(1);
    } finally {
      await cleanup();
    }
  });

  it('a restore reads its manifest once: the kind from the summary, the manifest handed on', async () => {
    const { dir, cleanup } = await scratch('coffer-catalogue-');
    try {
      await mkdir(join(dir, 'src'));
      await writeFile(join(dir, 'src', 'f'), 'content');
      const { key } = await backupFiles(repo, join(dir, 'src'));
      store.reset();
      // What the CLI does: which kind of restore from the catalogue, then one restore.
      expect((await repo.backupSummary(key)).kind).toBe('files');
      await restoreBackup(repo, key, join(dir, 'to'));
      expect(store.count('backups/')).toBe(1);
      store.reset();
      const loaded = await repo.resolveBackup(key);
      await restoreBackup(repo, loaded, join(dir, 'again'));
      expect(store.count('backups/')).toBe(1);
    } finally {
      await cleanup();
    }
  });
});
