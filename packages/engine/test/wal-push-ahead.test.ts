/**
 * walPush with --ahead archives several WAL files at once in one process. They
 * share the repository's chunk codec, whose sealed blobs are views into one
 * reused slab: a push whose pack upload is slow must not have the blobs it has
 * not yet copied into a pack overwritten by another push sealing its own.
 */
import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkRepository, fetchWalBytes, LocalKeyProvider, MemoryStore, Repository, walPush, type PutOutcome } from '@coffer/engine';
import { ForwardingStore } from '../../../test/support/forwarding-store.js';
import { scratchWithKey } from '../../../test/support/keys.js';
import { fakeCluster, segment, segmentName } from '../../../test/support/wal.js';

const SYS = 7_300_000_000_000_000_123n;
const SEG = 4 * 1024 * 1024;

/** Pack uploads take a while, as they do against a slow or retrying S3. */
class SlowPacks extends ForwardingStore {
  override async put(key: string, data: Uint8Array): Promise<PutOutcome> {
    if (key.startsWith('data/')) await new Promise((r) => setTimeout(r, 5 + Math.random() * 20));
    return super.put(key, data);
  }
}

let work: { dir: string; cleanup: () => Promise<void> };
let keys: LocalKeyProvider;
beforeAll(async () => {
  ({ work, keys } = await scratchWithKey('coffer-wal-ahead-'));
});
afterAll(async () => {
  await work.cleanup();
});

describe('walPush --ahead', () => {
  it('archives files in parallel with slow pack uploads, and every pack reads back whole', async () => {
    const repo = await Repository.init(new SlowPacks(new MemoryStore()), keys, { packSize: 256 * 1024 });
    const pgdata = await fakeCluster(join(work.dir, 'pg'), SYS);
    const names: string[] = [];
    for (let n = 1; n <= 5; n++) {
      const name = segmentName(n);
      // Incompressible past the header: every 1 MiB group blob fills a 256 KiB pack on its own.
      const seg = segment(SYS, n, SEG);
      randomBytes(SEG - 8192).copy(seg, 8192);
      await writeFile(join(pgdata, 'pg_wal', name), seg);
      if (n > 1) await writeFile(join(pgdata, 'pg_wal', 'archive_status', `${name}.ready`), '');
      names.push(name);
    }
    const pushed = await walPush(repo, join(pgdata, 'pg_wal', names[0]!), { ahead: 4 });
    expect(pushed.outcome).toBe('archived');
    expect(pushed.ahead).toEqual(names.slice(1));
    const report = await checkRepository(repo, { readData: true });
    expect(report.problems.map((p) => p.message)).toEqual([]);
    expect(report.ok).toBe(true);
    const scope = { stanza: 'main', systemIdentifier: SYS.toString() };
    for (const name of names) expect((await fetchWalBytes(repo, scope, name))?.length).toBe(SEG);
  });
});
