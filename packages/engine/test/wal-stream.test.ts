/**
 * Streamed partial segments: what `wal-receive` makes durable between
 * segment boundaries. Each flush stores only the bytes past the prefix stored
 * before; the whole segment's record reuses them; `wal-fetch` serves the
 * longest prefix zero-padded only while the segment is absent; retention
 * drops prefixes once superseded; garbage collection never takes what a
 * prefix (or the segment built on it) still needs.
 */
import { randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  checkRepository,
  collectGarbage,
  decideWal,
  fetchStreamedSegment,
  fetchWalBytes,
  LocalKeyProvider,
  longestStreamed,
  MemoryStore,
  parseWalKey,
  parseWalStreamName,
  readWalRecord,
  Repository,
  walFetch,
  walKey,
  walPush,
  walStreamName,
  WalStreamArchiver,
  type StoredPrefix,
} from '@coffer/engine';
import { scratchWithKey } from '../../../test/support/keys.js';
import { fakeCluster, segment, segmentName } from '../../../test/support/wal.js';

const SYS = 7_300_000_000_000_000_777n;
const SEG = 1024 * 1024;
const scope = { stanza: 'main', systemIdentifier: SYS.toString() };

let work: { dir: string; cleanup: () => Promise<void> };
let keys: LocalKeyProvider;
beforeAll(async () => {
  ({ work, keys } = await scratchWithKey('coffer-wal-stream-'));
});
afterAll(async () => {
  await work.cleanup();
});

/**
 * A segment whose bytes past its long page header (40 bytes) are random, so stored sizes show what was written:
 * two flushes cut from zeros would be the same chunk, stored once (a seed that cut 44, 51 and 58 found that).
 */
function walSegment(n: number): Buffer {
  const seg = segment(SYS, n, SEG);
  randomBytes(SEG - 40).copy(seg, 40);
  return seg;
}

/** Plaintext bytes stored in packs, over all records (each chunk once). */
function storedBytes(locations: Iterable<StoredPrefix>): number {
  const seen = new Map<string, number>();
  for (const p of locations) for (const [id, loc] of Object.entries(p.locations)) seen.set(id, loc[3]);
  return [...seen.values()].reduce((a, b) => a + b, 0);
}

describe('streamed partial segments', () => {
  it('names: segment, length in 8 hex digits, .stream; parsed back; never a name PostgreSQL asks for', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 2 ** 30 }), fc.integer({ min: 1, max: 0xffff }), (length, n) => {
        const name = walStreamName(segmentName(n), length);
        expect(parseWalStreamName(name)).toEqual({ segment: segmentName(n), length });
        const key = walKey(scope, name);
        expect(parseWalKey(key)).toEqual({ name, scope });
      }),
    );
    expect(() => walStreamName('00000001000000000000000X', 10)).toThrow(/segment name/);
    expect(() => walStreamName(segmentName(1), 0)).toThrow(/length/);
    expect(parseWalStreamName(segmentName(1))).toBeUndefined();
  });

  it('flushes at any cut points store each byte once; every prefix and the whole segment read back exact', async () => {
    await fc.assert(
      fc.asyncProperty(fc.uniqueArray(fc.integer({ min: 40, max: SEG - 1 }), { maxLength: 6 }), async (cutsIn) => {
        const repo = await Repository.init(new MemoryStore(), keys, {});
        const archiver = new WalStreamArchiver(repo, { systemIdentifier: scope.systemIdentifier });
        const seg = walSegment(1);
        const name = segmentName(1);
        const cuts = [...cutsIn].sort((a, b) => a - b);
        const states: StoredPrefix[] = [];
        let prior: StoredPrefix | undefined;
        for (const cut of cuts) {
          prior = await archiver.prefix(name, seg.subarray(0, cut), prior);
          states.push(prior);
          expect(await longestStreamed(repo, scope, name)).toBe(walStreamName(name, cut));
          const served = await fetchStreamedSegment(repo, scope, name);
          expect(served?.length).toBe(SEG);
          expect(served!.subarray(0, cut).equals(seg.subarray(0, cut))).toBe(true);
          expect(served!.subarray(cut).every((b) => b === 0)).toBe(true);
        }
        const whole = await archiver.file(name, seg, prior);
        expect(whole.outcome).toBe('archived');
        await archiver.close();
        expect((await fetchWalBytes(repo, scope, name))!.equals(seg)).toBe(true);
        // Never a prefix once the segment is whole.
        const served = await fetchStreamedSegment(repo, scope, name);
        if (cuts.length > 0) expect(served!.equals(seg)).toBe(true);
        else expect(served).toBeUndefined();
        // Each byte stored once: the whole record reuses every flush's chunks.
        const records = await Promise.all([name, ...cuts.map((c) => walStreamName(name, c))].map(async (n) => (await readWalRecord(repo, scope, n))!.record));
        expect(storedBytes(records.map((r) => ({ length: r.size, chunks: r.chunks, locations: r.locations })))).toBe(SEG);
        expect(storedBytes(states)).toBe(cuts.at(-1) ?? 0);
        const report = await checkRepository(repo, { readData: true });
        expect(report.problems.map((p) => p.message)).toEqual([]);
      }),
      { numRuns: 12 },
    );
  });

  it('wal-fetch serves the longest prefix zero-padded while the segment is absent, the segment once archived', async () => {
    const repo = await Repository.init(new MemoryStore(), keys, {});
    const archiver = new WalStreamArchiver(repo, { systemIdentifier: scope.systemIdentifier });
    const seg = walSegment(2);
    const name = segmentName(2);
    const dest = join(work.dir, 'RECOVERYXLOG');
    expect((await walFetch(repo, scope, name, dest)).outcome).toBe('absent');
    const a = await archiver.prefix(name, seg.subarray(0, 5000));
    await archiver.prefix(name, seg.subarray(0, 300_000), a);
    // A shorter prefix written late (a receiver restarted from the segment's start) changes nothing.
    await archiver.prefix(name, seg.subarray(0, 1000));
    const r = await walFetch(repo, scope, name, dest);
    expect(r).toEqual({ outcome: 'stream', size: SEG });
    const got = await readFile(dest);
    expect(got.subarray(0, 300_000).equals(seg.subarray(0, 300_000))).toBe(true);
    expect(got.subarray(300_000).every((b) => b === 0)).toBe(true);
    // The same prefix streamed again after a restart: create-only, same bytes, fine.
    const again = await archiver.prefix(name, seg.subarray(0, 300_000));
    expect(again.length).toBe(300_000);
    await archiver.file(name, seg);
    expect(await walFetch(repo, scope, name, dest)).toEqual({ outcome: 'archive', size: SEG });
    expect((await readFile(dest)).equals(seg)).toBe(true);
    await archiver.close();
  });

  it('a standby archiving the padded prefix wal-fetch served is told it is archived and stores nothing; the real segment is archived after', async () => {
    const repo = await Repository.init(new MemoryStore(), keys, {});
    const archiver = new WalStreamArchiver(repo, { systemIdentifier: scope.systemIdentifier });
    const seg = walSegment(5);
    const name = segmentName(5);
    await archiver.prefix(name, seg.subarray(0, 200_000));
    // The standby restored it (archive_mode = always archives what was restored): prefix, then zeros.
    const standby = await fakeCluster(join(work.dir, 'standby-5'), SYS);
    await writeFile(join(standby, 'standby.signal'), '');
    const served = join(standby, 'pg_wal', name);
    expect((await walFetch(repo, scope, name, served)).outcome).toBe('stream');
    expect((await walPush(repo, served)).outcome).toBe('already-archived');
    expect(await readWalRecord(repo, scope, name)).toBeUndefined();
    // A longer prefix streamed since: the copy served before is still only a prefix.
    await archiver.prefix(name, seg.subarray(0, 400_000));
    expect((await walPush(repo, served)).outcome).toBe('already-archived');
    expect(await readWalRecord(repo, scope, name)).toBeUndefined();
    // The primary archives the whole segment: stored, and what restore gets.
    const primary = await fakeCluster(join(work.dir, 'primary-5'), SYS);
    await writeFile(join(primary, 'pg_wal', name), seg);
    expect((await walPush(repo, join(primary, 'pg_wal', name))).outcome).toBe('archived');
    expect((await fetchWalBytes(repo, scope, name))!.equals(seg)).toBe(true);
    // A standby's copy of a segment that differs from the prefix anywhere is archived as usual (and here refused as a conflict).
    const other = segmentName(6);
    await archiver.prefix(other, seg.subarray(0, 100_000));
    const forged = Buffer.alloc(SEG);
    seg.copy(forged, 0, 0, 100_000);
    forged[150_000] = 1;
    await writeFile(join(standby, 'pg_wal', other), forged);
    expect((await walPush(repo, join(standby, 'pg_wal', other))).outcome).toBe('archived');
    await archiver.close();
  });

  it('retention drops prefixes superseded by a longer one or by the whole segment; gc keeps what the rest need', async () => {
    const repo = await Repository.init(new MemoryStore(), keys, {});
    const archiver = new WalStreamArchiver(repo, { systemIdentifier: scope.systemIdentifier });
    const [s3, s4] = [walSegment(3), walSegment(4)];
    let p3 = await archiver.prefix(segmentName(3), s3.subarray(0, 100_000));
    p3 = await archiver.prefix(segmentName(3), s3.subarray(0, 400_000), p3);
    await archiver.file(segmentName(3), s3, p3);
    let p4 = await archiver.prefix(segmentName(4), s4.subarray(0, 50_000));
    p4 = await archiver.prefix(segmentName(4), s4.subarray(0, 70_000), p4);
    await archiver.close();
    const keysNow = (await repo.objects.list('wal/')).map((o) => o.key).sort();
    const decisions = new Map(decideWal(keysNow, [], new Set(), new Map()).map((d) => [d.name, d]));
    expect(decisions.get(walStreamName(segmentName(3), 100_000))).toMatchObject({ keep: false, reason: 'streamed prefix of a segment archived whole' });
    expect(decisions.get(walStreamName(segmentName(3), 400_000))).toMatchObject({ keep: false, reason: 'streamed prefix of a segment archived whole' });
    expect(decisions.get(walStreamName(segmentName(4), 50_000))).toMatchObject({ keep: false, reason: 'streamed prefix of a segment streamed further' });
    expect(decisions.get(walStreamName(segmentName(4), 70_000))?.keep).toBe(true);
    expect(decisions.get(segmentName(3))?.keep).toBe(true);
    // What retention drops goes; gc then collects only what nothing references.
    for (const d of decisions.values()) if (!d.keep) await repo.objects.delete(d.key);
    await collectGarbage(repo, { leaseTtlMs: 2000 });
    expect((await fetchWalBytes(repo, scope, segmentName(3)))!.equals(s3)).toBe(true);
    const served = await fetchStreamedSegment(repo, scope, segmentName(4));
    expect(served!.subarray(0, 70_000).equals(s4.subarray(0, 70_000))).toBe(true);
    const report = await checkRepository(repo, { readData: true });
    expect(report.problems.map((p) => p.message)).toEqual([]);
  });
});
