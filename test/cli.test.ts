import { existsSync } from 'node:fs';
import { readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EXIT_CODES } from '@coffer/cli';
import { FileStore, LocalKeyProvider, Repository } from '@coffer/engine';
import { coffer } from './support/cli.js';
import { pseudoRandom, scratch, snapshot, writeTree } from './support/tree.js';

let work: { dir: string; cleanup: () => Promise<void> };
let repo: string;
let src: string;
const env = { COFFER_PASSPHRASE: 'cli test passphrase' };

beforeAll(async () => {
  work = await scratch('coffer-cli-');
  repo = join(work.dir, 'repo');
  src = join(work.dir, 'src');
  await writeTree(src, [
    { kind: 'file', name: 'a.bin', content: pseudoRandom(300_000, 1), mode: 0o640, mtimeMs: 1_600_000_000_000 },
    { kind: 'dir', name: 'sub', mode: 0o750, mtimeMs: 1_600_000_000_500, children: [{ kind: 'symlink', name: 'ln', target: '../a.bin', mtimeMs: 1_600_000_000_100 }] },
    { kind: 'file', name: 'empty', content: new Uint8Array(0), mode: 0o644, mtimeMs: 1_600_000_000_200 },
  ]);
});
afterAll(async () => work.cleanup());

describe('coffer CLI', () => {
  it('init, backup, list --json, restore, check --read-data --json', async () => {
    const init = await coffer(['init', '--repo', `file://${repo}`], env);
    expect(init.stderr).toBe('');
    expect(init.status).toBe(0);
    const backup = await coffer(['backup', '--path', src, '--json'], { ...env, COFFER_REPO: repo });
    expect(backup.status).toBe(0);
    const b = JSON.parse(backup.stdout) as { id: string; stats: { files: number; bytes: number } };
    expect(b.stats.files).toBe(2);
    expect(b.stats.bytes).toBe(300_000);

    const list = await coffer(['--repo', repo, 'list', '--json'], env);
    expect(list.status).toBe(0);
    const backups = JSON.parse(list.stdout) as Array<{ id: string; source: string; files: number }>;
    expect(backups).toHaveLength(1);
    expect(backups[0]!.id).toBe(b.id);
    expect(backups[0]!.source).toBe(src);

    const out = join(work.dir, 'out');
    const restore = await coffer(['--repo', repo, 'restore', b.id, '--to', out], env);
    expect(restore.status).toBe(0);
    expect(await snapshot(out)).toEqual(await snapshot(src));

    const check = await coffer(['--repo', repo, 'check', '--read-data', '--json'], env);
    expect(check.status).toBe(0);
    const report = JSON.parse(check.stdout) as { ok: boolean; chunksVerified: number; problems: unknown[] };
    expect(report.ok).toBe(true);
    expect(report.chunksVerified).toBeGreaterThan(0);
  });

  it('is quiet when not on a TTY: no progress output on stderr', async () => {
    const r = await coffer(['--repo', repo, 'backup', '--path', src], env);
    expect(r.status).toBe(0);
    expect(r.stderr).toBe('');
    expect(r.stdout).toMatch(/backup [0-9a-f]{12}/);
  });

  it('a second init fails with the already-initialised status', async () => {
    const r = await coffer(['--repo', repo, 'init'], env);
    expect(r.status).toBe(EXIT_CODES.COFFER_ALREADY_INITIALISED);
    expect(r.stderr).toContain(repo);
  });

  it('--version prints the package version and exits 0', async () => {
    const r = await coffer(['--version']);
    expect(r.status).toBe(0);
    const { version } = JSON.parse(await readFile(new URL('../packages/cli/package.json', import.meta.url), 'utf8')) as { version: string };
    expect(r.stdout.trim()).toBe(`coffer ${version}`);
  });

  it('init takes the relation chunk size into the config, and refuses one that is not whole pages without creating anything', async () => {
    const bad = join(work.dir, 'bad-relation-size');
    const r = await coffer(['--repo', bad, 'init', '--relation-chunk-size', '12000'], env);
    expect(r.status).toBe(EXIT_CODES.COFFER_INVALID_ARGUMENT);
    expect(r.stderr).toContain('relation chunk size');
    expect(existsSync(join(bad, 'config'))).toBe(false);
    const sized = join(work.dir, 'relation-64k');
    expect((await coffer(['--repo', sized, 'init', '--relation-chunk-size', '65536'], env)).status).toBe(0);
    expect((await Repository.open(new FileStore(sized), LocalKeyProvider.fromPassphrase(env.COFFER_PASSPHRASE))).config.relationChunker).toEqual({ algorithm: 'fixed', size: 65536, groupBytes: 131072 });
    const cdc = join(work.dir, 'relation-cdc');
    expect((await coffer(['--repo', cdc, 'init', '--relation-chunk-size', '0'], env)).status).toBe(0);
    expect((await Repository.open(new FileStore(cdc), LocalKeyProvider.fromPassphrase(env.COFFER_PASSPHRASE))).config.relationChunker).toBeUndefined();
  });

  it('a wrong passphrase fails with the wrong-key status before any file is written', async () => {
    const out = join(work.dir, 'never');
    const r = await coffer(['--repo', repo, 'restore', 'latest', '--to', out], { COFFER_PASSPHRASE: 'not the passphrase' });
    expect(r.status).toBe(EXIT_CODES.COFFER_WRONG_KEY);
    expect(r.stderr).toMatch(/wrong key/);
    expect(r.stderr).not.toContain('not the passphrase');
    expect(existsSync(out)).toBe(false);
  });

  it('a flipped byte in a pack fails check --read-data and restore with the corrupt-object status naming the pack', async () => {
    const list = JSON.parse((await coffer(['--repo', repo, 'check', '--json'], env)).stdout) as { packs: number };
    expect(list.packs).toBeGreaterThan(0);
    const { readdir } = await import('node:fs/promises');
    const fan = (await readdir(join(repo, 'data')))[0]!;
    const name = (await readdir(join(repo, 'data', fan)))[0]!;
    const path = join(repo, 'data', fan, name);
    const original = await readFile(path);
    const damaged = Buffer.from(original);
    const mid = Math.floor(damaged.length / 2);
    damaged[mid] = damaged[mid]! ^ 0x01;
    await writeFile(path, damaged);
    try {
      const check = await coffer(['--repo', repo, 'check', '--read-data'], env);
      expect(check.status).toBe(EXIT_CODES.COFFER_CORRUPT_OBJECT);
      expect(check.stderr).toContain(`data/${fan}/${name}`);
      const restore = await coffer(['--repo', repo, 'restore', 'latest', '--to', join(work.dir, 'out-bad')], env);
      expect(restore.status).toBe(EXIT_CODES.COFFER_CORRUPT_OBJECT);
      expect(restore.stderr).toContain(`data/${fan}/${name}`);
      expect(restore.stderr).toContain('a.bin');
    } finally {
      await writeFile(path, original);
    }
  });

  it('maps other errors to their own statuses and names what is at fault', async () => {
    const none = await coffer(['--repo', join(work.dir, 'nothing-here'), 'list'], env);
    expect(none.status).toBe(EXIT_CODES.COFFER_NOT_A_REPOSITORY);
    expect(none.stderr).toContain('nothing-here');

    const noKey = await coffer(['--repo', repo, 'list']);
    expect(noKey.status).toBe(EXIT_CODES.COFFER_INVALID_ARGUMENT);
    expect(noKey.stderr).toMatch(/COFFER_PASSPHRASE/);

    const missing = await coffer(['--repo', repo, 'restore', 'ffffffffffff', '--to', join(work.dir, 'x')], env);
    expect(missing.status).toBe(EXIT_CODES.COFFER_BACKUP_NOT_FOUND);

    const occupied = join(work.dir, 'occupied');
    await writeTree(occupied, [{ kind: 'file', name: 'mine', content: Buffer.from('keep'), mode: 0o644, mtimeMs: 1_600_000_000_000 }]);
    const notEmpty = await coffer(['--repo', repo, 'restore', 'latest', '--to', occupied], env);
    expect(notEmpty.status).toBe(EXIT_CODES.COFFER_TARGET_NOT_EMPTY);
    expect((await readFile(join(occupied, 'mine'))).toString()).toBe('keep');

    const badSource = await coffer(['--repo', repo, 'backup', '--path', join(work.dir, 'no-such-dir')], env);
    expect(badSource.status).toBe(EXIT_CODES.COFFER_SOURCE_ERROR);
    expect(badSource.stderr).toContain('no-such-dir');

    const badOption = await coffer(['--repo', repo, 'backup', '--path', src, '--workers', 'lots'], env);
    expect(badOption.status).toBe(EXIT_CODES.COFFER_INVALID_ARGUMENT);
    expect(badOption.stderr).toContain('--workers');

    const usage = await coffer(['frobnicate'], env);
    expect(usage.status).toBe(2);
  });

  it('opens the repository with a key file instead of a passphrase', async () => {
    const keyFile = join(work.dir, 'key');
    const gen = await coffer(['key-file']);
    expect(gen.status).toBe(0);
    await writeFile(keyFile, gen.stdout, { mode: 0o600 });
    const kRepo = join(work.dir, 'krepo');
    expect((await coffer(['--repo', kRepo, '--key-file', keyFile, 'init'])).status).toBe(0);
    expect((await coffer(['--repo', kRepo, '--key-file', keyFile, 'backup', '--path', src])).status).toBe(0);
    const drill = await coffer(['--repo', kRepo, '--key-file', keyFile, 'drill', 'latest', '--json']);
    expect(drill.status).toBe(0);
    const report = JSON.parse(drill.stdout) as { ok: boolean; files: number; sandbox: string };
    expect(report.ok).toBe(true);
    expect(report.files).toBe(2);
    expect(existsSync(report.sandbox)).toBe(false);
    expect((await coffer(['--repo', kRepo, 'list'], env)).status).toBe(EXIT_CODES.COFFER_WRONG_KEY);
    expect((await stat(keyFile)).size).toBeGreaterThan(32);
  });
});
