/**
 * After a lost pack, dedup must not trust the index over the store: repair
 * takes the lost packs out of the index and reports the backups that can no
 * longer be restored in full (exit 27); the next backup does not take such a
 * backup as its parent and stores its chunks again, which completes the old
 * backup too; a backup with --parent none re-stores them even before repair.
 */
import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EXIT_CODES, EXIT_REPAIR_INCOMPLETE } from '@coffer/cli';
import { LocalKeyProvider } from '@coffer/engine';
import { coffer } from './support/cli.js';
import { pseudoRandom, scratch } from './support/tree.js';

let work: { dir: string; cleanup: () => Promise<void> };
let repo: string;
let src: string;
let env: Record<string, string>;

async function dropAllPacks(): Promise<number> {
  let n = 0;
  for (const sub of await readdir(join(repo, 'data'))) {
    for (const f of await readdir(join(repo, 'data', sub))) {
      await rm(join(repo, 'data', sub, f));
      n++;
    }
  }
  return n;
}

beforeAll(async () => {
  work = await scratch('coffer-repair-');
  repo = join(work.dir, 'repo');
  src = join(work.dir, 'src');
  await mkdir(join(src, 'docs'), { recursive: true });
  await writeFile(join(src, 'docs', 'a.bin'), pseudoRandom(300_000, 1));
  await writeFile(join(src, 'b.txt'), 'kept\n'.repeat(1000));
  const keyFile = join(work.dir, 'key');
  await writeFile(keyFile, LocalKeyProvider.newKeyFileContent(), { mode: 0o600 });
  env = { COFFER_KEY_FILE: keyFile };
  expect((await coffer(['--repo', repo, 'init'], env)).status).toBe(0);
}, 60_000);
afterAll(async () => work.cleanup());

describe('repair after a lost pack', () => {
  it('reports what cannot be restored, stops dedup against lost chunks, and a new backup completes the old one', async () => {
    const first = await coffer(['--repo', repo, 'backup', '--path', src, '--json'], env);
    expect(first.status).toBe(0);
    const firstId = (JSON.parse(first.stdout) as { id: string }).id;
    expect(await dropAllPacks()).toBeGreaterThan(0);

    const before = await coffer(['--repo', repo, 'check'], env);
    expect(before.status).toBe(EXIT_CODES.COFFER_MISSING_OBJECT);
    expect(before.stdout).toContain('coffer repair takes missing or damaged packs out of the index');
    const found = await coffer(['--repo', repo, 'repair', '--json'], env);
    expect(found.status).toBe(EXIT_REPAIR_INCOMPLETE);
    const report = JSON.parse(found.stdout) as { lostPacks: string[]; incomplete: { key: string; files: string[] }[]; damageRecord?: string };
    expect(report.lostPacks.length).toBeGreaterThan(0);
    expect(report.incomplete).toHaveLength(1);
    expect(report.incomplete[0]!.key).toContain(firstId);
    expect(report.incomplete[0]!.files.sort()).toEqual(['b.txt', 'docs/a.bin']);
    expect(report.damageRecord).toMatch(/^damage\//);
    // The index no longer names lost packs: check now says the backup's chunks are listed by no index.
    const checked = await coffer(['--repo', repo, 'check'], env);
    expect(checked.status).toBe(EXIT_CODES.COFFER_MISSING_OBJECT);
    expect(checked.stderr).toContain('listed by no index');

    // Nothing changed in the source, yet the next backup reads and stores everything: the old one is not its parent.
    const second = await coffer(['--repo', repo, 'backup', '--path', src, '--json'], env);
    expect(second.status).toBe(0);
    const secondResult = JSON.parse(second.stdout) as { stats: { newChunks: number; unchangedFiles: number } };
    expect(secondResult.stats.unchangedFiles).toBe(0);
    expect(secondResult.stats.newChunks).toBeGreaterThan(0);

    const again = await coffer(['--repo', repo, 'repair'], env);
    expect(again.status).toBe(0);
    expect(again.stdout).toContain('every backup can be restored in full');
    const out = join(work.dir, 'out-first');
    expect((await coffer(['--repo', repo, 'restore', firstId, '--to', out], env)).status).toBe(0);
    expect((await readFile(join(out, 'docs', 'a.bin'))).equals(pseudoRandom(300_000, 1))).toBe(true);
    expect((await coffer(['--repo', repo, 'check', '--read-data'], env)).status).toBe(0);
  });

  it('a backup with --parent none stores again chunks whose pack is gone, before any repair', async () => {
    await dropAllPacks();
    const fresh = await coffer(['--repo', repo, 'backup', '--path', src, '--parent', 'none', '--json'], env);
    expect(fresh.status).toBe(0);
    expect((JSON.parse(fresh.stdout) as { stats: { newChunks: number } }).stats.newChunks).toBeGreaterThan(0);
    const repaired = await coffer(['--repo', repo, 'repair'], env);
    expect(repaired.status).toBe(0);
    expect(repaired.stdout).toContain('lost pack(s) taken out of');
    expect((await coffer(['--repo', repo, 'check', '--read-data'], env)).status).toBe(0);
    const list = JSON.parse((await coffer(['--repo', repo, 'list', '--json'], env)).stdout) as { id: string }[];
    for (const b of list) {
      const to = join(work.dir, `out-${b.id}`);
      expect((await coffer(['--repo', repo, 'restore', b.id, '--to', to], env)).status).toBe(0);
      expect(await readFile(join(to, 'b.txt'), 'utf8')).toBe('kept\n'.repeat(1000));
    }
  });

  it('repair --path backs the source up again in the same run, and what it still holds completes every backup', async () => {
    await dropAllPacks();
    const r = await coffer(['--repo', repo, 'repair', '--path', src, '--json'], env);
    expect(r.status).toBe(0);
    const report = JSON.parse(r.stdout) as { lostPacks: string[]; restored: { source: string }[]; incomplete: unknown[] };
    expect(report.lostPacks.length).toBeGreaterThan(0);
    expect(report.restored.map((x) => x.source)).toEqual([src]);
    expect(report.incomplete).toEqual([]);
    expect((await coffer(['--repo', repo, 'check', '--read-data'], env)).status).toBe(0);
  });
});

describe('repair --from a mirror', () => {
  /** Every pack file of a file-store repository. */
  async function packs(root: string): Promise<string[]> {
    const out: string[] = [];
    for (const sub of (await readdir(join(root, 'data'))).sort()) for (const f of (await readdir(join(root, 'data', sub))).sort()) out.push(join(root, 'data', sub, f));
    return out;
  }
  const flip = async (path: string) => {
    const bytes = await readFile(path);
    bytes[Math.floor(bytes.length / 2)]! ^= 0x40;
    await rm(path);
    await writeFile(path, bytes);
  };

  it('puts back whole the packs damaged or lost here, and only from a copy of this repository', async () => {
    const primary = join(work.dir, 'from-primary');
    const mirrorDir = join(work.dir, 'from-mirror');
    expect((await coffer(['--repo', primary, 'init', '--pack-size', String(64 * 1024)], env)).status).toBe(0);
    expect((await coffer(['--repo', primary, 'backup', '--path', src], env)).status).toBe(0);
    expect((await coffer(['--repo', primary, 'mirror', '--to', mirrorDir], env)).status).toBe(0);
    const all = await packs(primary);
    expect(all.length).toBeGreaterThan(2);
    await flip(all[0]!);
    await rm(all[1]!);
    expect((await coffer(['--repo', primary, 'check', '--read-data'], env)).status).not.toBe(0);

    // Another repository is no source of copies.
    const other = join(work.dir, 'from-other');
    expect((await coffer(['--repo', other, 'init'], env)).status).toBe(0);
    const refused = await coffer(['--repo', primary, 'repair', '--read-data', '--from', other], env);
    expect(refused.status).toBe(EXIT_CODES.COFFER_INVALID_ARGUMENT);
    expect(refused.stderr).toContain('holds another repository');

    const r = await coffer(['--repo', primary, 'repair', '--read-data', '--from', mirrorDir, '--json'], env);
    expect(r.status, r.stderr).toBe(0);
    const report = JSON.parse(r.stdout) as { putBack: string[]; lostPacks: string[]; incomplete: unknown[] };
    expect(report.putBack.map((k) => k.slice(k.lastIndexOf('/') + 1)).sort()).toEqual([all[0]!, all[1]!].map((p) => p.slice(p.lastIndexOf('/') + 1)).sort());
    expect(report.lostPacks).toEqual([]);
    expect(report.incomplete).toEqual([]);
    expect((await coffer(['--repo', primary, 'check', '--read-data'], env)).status).toBe(0);

    // Damaged in both places: lost, and said so.
    await flip((await packs(primary))[2]!);
    await flip((await packs(mirrorDir))[2]!);
    const both = await coffer(['--repo', primary, 'repair', '--read-data', '--from', mirrorDir], env);
    expect(both.status).toBe(EXIT_REPAIR_INCOMPLETE);
    expect(both.stderr).toContain('is damaged too');
  });
});
