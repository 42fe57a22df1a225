/**
 * The sandbox's WAL socket serves what the repository holds, and nothing past
 * the end the run began with: a source that archives on must not keep a
 * verification recovering for as long as it writes.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LocalKeyProvider, MemoryStore, Repository, walPush } from '@coffer/engine';
import { scratchWithKey } from '../../../test/support/keys.js';
import { fakeCluster, segment, segmentName } from '../../../test/support/wal.js';
import { fetchWalViaSocket, WalSocketServer } from '../src/index.js';

const SYS = 7_300_000_000_000_000_321n;
const SEG = 1024 * 1024;

let work: { dir: string; cleanup: () => Promise<void> };
let keys: LocalKeyProvider;
beforeAll(async () => {
  ({ work, keys } = await scratchWithKey('coffer-wal-socket-'));
});
afterAll(async () => work.cleanup());

describe('WalSocketServer', () => {
  it('serves archived segments up to its horizon, and answers "absent" for those archived past it, on any timeline', async () => {
    const repo = await Repository.init(new MemoryStore(), keys);
    const pgdata = await fakeCluster(join(work.dir, 'pg'), SYS);
    const segments = new Map<string, Buffer>();
    for (let n = 1; n <= 4; n++) {
      const name = segmentName(n);
      const bytes = segment(SYS, n, SEG);
      segments.set(name, bytes);
      await writeFile(join(pgdata, 'pg_wal', name), bytes);
      await walPush(repo, join(pgdata, 'pg_wal', name));
    }
    const scope = { stanza: 'main', systemIdentifier: SYS.toString() };
    const socket = join(work.dir, 'wal.sock');
    const server = await WalSocketServer.listen(repo, scope, socket, SEG, { through: segmentName(2) });
    try {
      const get = (name: string) => fetchWalViaSocket(socket, name, join(work.dir, `got-${name}`));
      for (const n of [1, 2]) {
        const name = segmentName(n);
        expect(await get(name)).toBe('fetched');
        expect((await readFile(join(work.dir, `got-${name}`))).equals(segments.get(name)!)).toBe(true);
      }
      // Archived, but after the run began (as the horizon stands for).
      expect(await get(segmentName(3))).toBe('absent');
      expect(await get(segmentName(4))).toBe('absent');
      // A later timeline past the horizon is not served either.
      expect(await get(`00000002${segmentName(3).slice(8)}`)).toBe('absent');
      expect(server.stats.files).toBe(2);
      expect(server.stats.absent).toEqual([segmentName(3), segmentName(4), `00000002${segmentName(3).slice(8)}`]);
    } finally {
      await server.close();
    }
    // Without a horizon, everything archived is served.
    const open = await WalSocketServer.listen(repo, scope, socket, SEG);
    try {
      expect(await fetchWalViaSocket(socket, segmentName(4), join(work.dir, 'got-4'))).toBe('fetched');
    } finally {
      await open.close();
    }
  });
});
