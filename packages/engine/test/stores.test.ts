import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { collectList, FileStore, fileStorePath, MemoryStore } from '@coffer/engine';
import { describeObjectStore } from '@coffer/engine/testing';
import { scratch } from '../../../test/support/tree.js';

describeObjectStore('MemoryStore', async () => ({ store: new MemoryStore() }));

describeObjectStore('FileStore', async () => {
  const { dir, cleanup } = await scratch('coffer-filestore-');
  return { store: new FileStore(join(dir, 'repo')), cleanup };
});

describe('FileStore specifics', () => {
  it('half-written files left by a crash are never listed or returned', async () => {
    const { dir, cleanup } = await scratch();
    try {
      const store = new FileStore(dir);
      await store.put('data/aa/real', Buffer.from('complete'));
      await mkdir(join(dir, '.tmp'), { recursive: true });
      await writeFile(join(dir, '.tmp', 'deadbeef.part'), 'half');
      expect((await collectList(store, '')).map((o) => o.key)).toEqual(['data/aa/real']);
    } finally {
      await cleanup();
    }
  });

  it('accepts paths and file:// URLs', () => {
    expect(fileStorePath('file:///srv/backups/repo%201')).toBe('/srv/backups/repo 1');
    expect(fileStorePath('/srv/x')).toBe('/srv/x');
  });
});
