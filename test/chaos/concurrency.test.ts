/**
 * Concurrency for minutes: on one repository, as separate `coffer` processes
 * all at once and over and over — two backup lanes (each its own source, which
 * changes between backups), WAL archiving, expire, gc, mirror and drills —
 * until the time is up. Every command must succeed (or, for gc, report the
 * repository busy); nothing an acknowledged backup or segment needs may go
 * missing. At the end: `check --read-data` passes, every backup still listed
 * restores exactly as its source was, every archived segment comes back byte
 * for byte, and a last mirror checks on its own.
 *
 * `sized(20 s, 5 min)`: a short run under `npm test`, minutes under
 * `npm run chaos -- --long`.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EXIT_CODES } from '@coffer/cli';
import { coffer, type RunResult } from '../support/cli.js';
import { pseudoRandom, scratch, snapshot, type SnapshotEntry } from '../support/tree.js';
import { fakeCluster, segment, segmentName } from '../support/wal.js';
import { addFigures, sized } from './figures.js';

const SECONDS = sized(20, 300);
const SYSID = 7_600_000_000_000_000_001n;
const SEG = 1 << 20;

let work: { dir: string; cleanup: () => Promise<void> };
beforeAll(async () => {
  work = await scratch('coffer-concurrency-');
});
afterAll(async () => work.cleanup());

interface Acked {
  id: string;
  lane: number;
  snap: Map<string, SnapshotEntry>;
}

describe('concurrency', () => {
  it(`backups, WAL archiving, expire, gc, mirror and drills at once for ${SECONDS} s lose nothing acknowledged`, async () => {
    const keyFile = join(work.dir, 'key');
    await writeFile(keyFile, randomBytes(32).toString('base64'), { mode: 0o600 });
    const repo = join(work.dir, 'repo');
    const mirrorRepo = join(work.dir, 'mirror');
    const env = { COFFER_KEY_FILE: keyFile };
    const run = (args: string[]) => coffer(['--repo', repo, '-q', ...args], env);
    expect((await run(['init', '--pack-size', String(256 * 1024)])).status).toBe(0);
    const pgdata = await fakeCluster(join(work.dir, 'pgdata'), SYSID);

    const deadline = Date.now() + SECONDS * 1000;
    const acked: Acked[] = [];
    const segments: number[] = [];
    const counts: Record<string, number> = {};
    const failures: string[] = [];
    const ran = (lane: string, r: RunResult, allowed: number[] = []) => {
      counts[lane] = (counts[lane] ?? 0) + 1;
      if (r.status !== 0 && !allowed.includes(r.status ?? -1)) failures.push(`${lane} exited ${r.status} (${r.signal}): ${r.stderr.trim().slice(0, 500)}`);
      return r.status === 0;
    };

    const backupLane = async (lane: number) => {
      const src = join(work.dir, `src-${lane}`);
      await mkdir(src);
      await writeFile(join(src, 'stable.bin'), pseudoRandom(300_000, lane));
      for (let v = 0; Date.now() < deadline; v++) {
        await writeFile(join(src, 'changing.bin'), pseudoRandom(120_000, lane * 1000 + v));
        await writeFile(join(src, `v${v}.txt`), `lane ${lane} version ${v}\n`.repeat(300));
        await rm(join(src, `v${v - 3}.txt`), { force: true });
        const snap = await snapshot(src);
        const r = await run(['backup', '--path', src, '--json']);
        if (ran(`backup ${lane}`, r)) acked.push({ id: (JSON.parse(r.stdout) as { id: string }).id, lane, snap });
      }
    };
    const walLane = async () => {
      for (let n = 1; Date.now() < deadline; n++) {
        const name = segmentName(n);
        await writeFile(join(pgdata, 'pg_wal', name), segment(SYSID, n, SEG));
        if (ran('wal-push', await run(['wal-push', '--ahead', '0', join(pgdata, 'pg_wal', name)]))) segments.push(n);
      }
    };
    const loop = async (lane: string, args: string[], allowed: number[] = [], pauseMs = 300, when: () => boolean = () => true) => {
      while (Date.now() < deadline) {
        if (!when()) {
          await new Promise((r) => setTimeout(r, 100));
          continue;
        }
        ran(lane, await run(args), allowed);
        await new Promise((r) => setTimeout(r, pauseMs));
      }
    };
    await Promise.all([
      backupLane(1),
      backupLane(2),
      walLane(),
      loop('expire', ['expire', '--keep-min', '3']),
      // Another collection at work (or writers it waited too long for): busy, nothing deleted.
      loop('gc', ['gc', '--max-wait', '20'], [EXIT_CODES.COFFER_REPOSITORY_BUSY]),
      loop('mirror', ['mirror', '--to', mirrorRepo]),
      // A drill of the newest backup, once there is one.
      loop('drill', ['drill', 'latest'], [], 500, () => acked.length > 0),
    ]);
    expect(failures).toEqual([]);
    for (const lane of ['backup 1', 'backup 2', 'wal-push', 'expire', 'gc', 'mirror', 'drill']) expect(counts[lane], lane).toBeGreaterThan(0);

    // Everything acknowledged and still kept is there, whole.
    expect((await run(['check', '--read-data'])).status).toBe(0);
    const listed = new Set((JSON.parse((await run(['list', '--json'])).stdout) as { id: string }[]).map((b) => b.id));
    const kept = acked.filter((b) => listed.has(b.id));
    // Expire keeps the newest three of each source at least.
    for (const lane of [1, 2]) expect(kept.filter((b) => b.lane === lane).length).toBeGreaterThanOrEqual(Math.min(3, acked.filter((b) => b.lane === lane).length));
    for (const b of kept) {
      const to = join(work.dir, `restore-${b.id}`);
      const r = await run(['restore', b.id, '--to', to]);
      expect(r.status, r.stderr).toBe(0);
      expect(await snapshot(to)).toEqual(b.snap);
      await rm(to, { recursive: true, force: true });
    }
    for (const n of segments) {
      const dest = join(work.dir, 'fetched');
      const r = await run(['wal-fetch', '--system-id', SYSID.toString(), segmentName(n), dest]);
      expect(r.status, `segment ${n}: ${r.stderr}`).toBe(0);
      expect((await readFile(dest)).equals(segment(SYSID, n, SEG))).toBe(true);
      await rm(dest);
    }
    expect((await run(['mirror', '--to', mirrorRepo])).status).toBe(0);
    expect((await coffer(['--repo', mirrorRepo, '-q', 'check', '--read-data'], env)).status).toBe(0);
    await addFigures('concurrency', { trials: Object.values(counts).reduce((a, b) => a + b, 0), concurrentMinutes: SECONDS / 60 });
  }, 3_600_000);
});
