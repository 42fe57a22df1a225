/**
 * The CLI's rough edges, through the real binary: a file:// URL with a host,
 * a closed stdout, file-system failures as typed errors with their own
 * statuses, choosing a backup by tag or by a short or ambiguous id, and
 * where a delta restore may go.
 */
import { execFile } from 'node:child_process';
import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EXIT_CODES } from '@coffer/cli';
import { LocalKeyProvider } from '@coffer/engine';
import { coffer, COFFER_BIN, startCoffer } from './support/cli.js';
import { pseudoRandom, scratch } from './support/tree.js';

let work: { dir: string; cleanup: () => Promise<void> };
let repo: string;
let src: string;
let env: Record<string, string>;
const ids: string[] = [];

beforeAll(async () => {
  work = await scratch('coffer-edges-');
  repo = join(work.dir, 'repo');
  src = join(work.dir, 'src');
  await mkdir(src);
  const keyFile = join(work.dir, 'key');
  await writeFile(keyFile, LocalKeyProvider.newKeyFileContent(), { mode: 0o600 });
  env = { COFFER_KEY_FILE: keyFile };
  expect((await coffer(['--repo', repo, 'init'], env)).status).toBe(0);
  // Enough backups that two ids share a first hex digit (17 > 16 possible digits).
  for (let i = 0; i < 17; i++) {
    await writeFile(join(src, 'f'), `version ${i}\n`);
    const r = await coffer(['--repo', repo, 'backup', '--path', src, '--json', ...(i === 3 ? ['--tag', 'golden'] : [])], env);
    expect(r.status).toBe(0);
    ids.push((JSON.parse(r.stdout) as { id: string }).id);
  }
}, 120_000);
afterAll(async () => work.cleanup());

describe('CLI edges', () => {
  it('a file:// URL with a host is refused instead of meaning /; localhost is the local host', async () => {
    const r = await coffer(['--repo', 'file://backups', 'list'], env);
    expect(r.status).toBe(EXIT_CODES.COFFER_INVALID_ARGUMENT);
    expect(r.stderr).toContain('names host "backups"');
    expect((await coffer(['--repo', `file://localhost${repo}`, 'list'], env)).status).toBe(0);
  });

  it('init refuses a location that is not empty, and a lost config is reported as lost, not as "no repository"', async () => {
    const occupied = join(work.dir, 'occupied');
    await mkdir(occupied);
    await writeFile(join(occupied, 'notes.txt'), 'mine');
    const r = await coffer(['--repo', occupied, 'init'], env);
    expect(r.status).toBe(EXIT_CODES.COFFER_ALREADY_INITIALISED);
    expect(r.stderr).toContain('not empty (notes.txt)');
    const lost = join(work.dir, 'lost');
    expect((await coffer(['--repo', lost, 'init'], env)).status).toBe(0);
    await writeFile(join(src, 'f'), 'lost soon');
    expect((await coffer(['--repo', lost, 'backup', '--path', src], env)).status).toBe(0);
    await rm(join(lost, 'config'));
    const list = await coffer(['--repo', lost, 'list'], env);
    expect(list.status).toBe(EXIT_CODES.COFFER_MISSING_OBJECT);
    expect(list.stderr).toContain("config is lost");
    const again = await coffer(['--repo', lost, 'init'], env);
    expect(again.status).toBe(EXIT_CODES.COFFER_ALREADY_INITIALISED);
    expect(again.stderr).toContain('config is lost');
    expect((await coffer(['--repo', join(work.dir, 'nothing-here'), 'list'], env)).status).toBe(EXIT_CODES.COFFER_NOT_A_REPOSITORY);
  });

  it('a lost config is rebuilt by repair from its authenticated copy under keys/, with the keys only; without the copy, repair makes one', async () => {
    const lost = join(work.dir, 'lost-repair');
    expect((await coffer(['--repo', lost, 'init'], env)).status).toBe(0);
    await writeFile(join(src, 'f'), 'kept through a lost config');
    const backup = await coffer(['--repo', lost, 'backup', '--path', src, '--json'], env);
    expect(backup.status).toBe(0);
    const id = (JSON.parse(backup.stdout) as { id: string }).id;
    const config = await readFile(join(lost, 'config'));
    await rm(join(lost, 'config'));
    // Another key cannot rebuild it, and nothing is written.
    const otherKey = join(work.dir, 'other.key');
    await writeFile(otherKey, LocalKeyProvider.newKeyFileContent(), { mode: 0o600 });
    const wrong = await coffer(['--repo', lost, 'repair'], { COFFER_KEY_FILE: otherKey });
    expect(wrong.status).not.toBe(0);
    expect(await readdir(lost)).not.toContain('config');
    const repaired = await coffer(['--repo', lost, 'repair'], env);
    expect(repaired.status).toBe(0);
    expect(repaired.stdout).toContain('rebuilt the config');
    expect((await readFile(join(lost, 'config'))).equals(config)).toBe(true);
    const out = join(work.dir, 'lost-repair-out');
    expect((await coffer(['--repo', lost, 'restore', id, '--to', out], env)).status).toBe(0);
    expect(await readFile(join(out, 'f'), 'utf8')).toBe('kept through a lost config');
    expect((await coffer(['--repo', lost, 'check', '--read-data'], env)).status).toBe(0);
    expect((await coffer(['--repo', lost, 'repair'], env)).stdout).toContain('nothing to repair');
    // A repository whose copy is gone (made before copies were kept) gets one from repair.
    const copies = (await readdir(join(lost, 'keys'))).filter((n) => !n.startsWith('.'));
    expect(copies).toHaveLength(1);
    await rm(join(lost, 'keys', copies[0]!));
    const made = await coffer(['--repo', lost, 'repair'], env);
    expect(made.stdout).toContain('wrote an authenticated copy of the config');
    await rm(join(lost, 'config'));
    expect((await coffer(['--repo', lost, 'repair'], env)).status).toBe(0);
    expect((await coffer(['--repo', lost, 'list'], env)).status).toBe(0);
  });

  it('a reader that goes away (coffer list | true) ends the command quietly', async () => {
    const r = await promisify(execFile)('bash', ['-c', `set -o pipefail; "${process.execPath}" "${COFFER_BIN}" --repo "${repo}" list --json | true`], { env: { ...process.env, ...env } }).then(
      (x) => ({ code: 0, stderr: x.stderr }),
      (e: { code: number; stderr: string }) => ({ code: e.code, stderr: e.stderr }),
    );
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
  });

  it('file-system failures are typed, with their own statuses and a one-line message naming the path', async () => {
    const file = join(work.dir, 'a-file');
    await writeFile(file, 'x');
    const onFile = await coffer(['--repo', repo, 'restore', 'latest', '--to', join(file, 'sub')], env);
    expect(onFile.status).toBe(EXIT_CODES.COFFER_FILE_ERROR);
    expect(onFile.stderr.trim().split('\n')).toHaveLength(1);
    expect(onFile.stderr).toContain(file);
    const drill = await coffer(['--repo', repo, 'drill', 'latest', '--sandbox', join(work.dir, 'no-such-dir')], env);
    expect(drill.status).toBe(EXIT_CODES.COFFER_FILE_ERROR);
    expect(drill.stderr).toContain('no-such-dir');
    expect(drill.stderr).not.toContain('    at ');
  });

  it('names that are not UTF-8 (Latin-1 payroll-\\xe9t\\xe9.xls under Proj\\xe8ts/) are backed up, listed escaped, restored byte for byte, and drilled', async () => {
    const tree = join(work.dir, 'latin1');
    await mkdir(tree);
    const dirName = Buffer.concat([Buffer.from(tree + '/'), Buffer.from('Proj\xe8ts', 'latin1')]);
    await mkdir(dirName);
    const file = Buffer.concat([dirName, Buffer.from('/'), Buffer.from('payroll-\xe9t\xe9.xls', 'latin1')]);
    await writeFile(file, 'salaries\n');
    const b = await coffer(['--repo', repo, 'backup', '--path', tree, '--json'], env);
    expect(b.status).toBe(0);
    expect((JSON.parse(b.stdout) as { stats: { files: number; skipped: string[] } }).stats).toMatchObject({ files: 1, skipped: [] });
    const id = (JSON.parse(b.stdout) as { id: string }).id;
    ids.push(id);
    const to = join(work.dir, 'latin1-restored');
    expect((await coffer(['--repo', repo, 'restore', id, '--to', to], env)).status).toBe(0);
    const restored = Buffer.concat([Buffer.from(to + '/'), Buffer.from('Proj\xe8ts/payroll-\xe9t\xe9.xls', 'latin1')]);
    expect((await readFile(restored)).toString()).toBe('salaries\n');
    const drill = await coffer(['--repo', repo, 'drill', id], env);
    expect(drill.status).toBe(0);
    expect(drill.stdout).toContain('1 files');
  });

  it('a tag selects the newest backup carrying it and list shows tags; a short unique id prefix matches; an ambiguous one names the candidates', async () => {
    const tagged = await coffer(['--repo', repo, 'restore', 'golden', '--to', join(work.dir, 'golden')], env);
    expect(tagged.status).toBe(0);
    expect(tagged.stdout).toContain(ids[3]!);
    const list = await coffer(['--repo', repo, 'list'], env);
    expect(list.stdout.split('\n').find((l) => l.startsWith(ids[3]!))).toContain('golden');
    // Some first hex digit is shared by two of the 17 ids; some prefix of 1–3 digits is unique.
    const byFirst = new Map<string, string[]>();
    for (const id of ids) byFirst.set(id[0]!, [...(byFirst.get(id[0]!) ?? []), id]);
    const [shared, owners] = [...byFirst.entries()].find(([, v]) => v.length > 1)!;
    const ambiguous = await coffer(['--repo', repo, 'restore', shared, '--to', join(work.dir, 'amb')], env);
    expect(ambiguous.status).toBe(EXIT_CODES.COFFER_BACKUP_NOT_FOUND);
    expect(ambiguous.stderr).toContain('ambiguous: matches');
    for (const id of owners) expect(ambiguous.stderr).toContain(id);
    const unique = ids.map((id) => [id, [1, 2, 3].map((n) => id.slice(0, n)).find((p) => ids.filter((x) => x.startsWith(p)).length === 1)] as const).find(([, p]) => p)!;
    const short = await coffer(['--repo', repo, 'restore', unique[1]!, '--to', join(work.dir, 'short'), '--json'], env);
    expect(short.status).toBe(0);
    expect((JSON.parse(short.stdout) as { key: string }).key).toContain(unique[0]);
  });

  it('the key used is said when both a key file and COFFER_PASSPHRASE are set', async () => {
    const r = await coffer(['--repo', repo, 'list'], { ...env, COFFER_PASSPHRASE: 'ignored' });
    expect(r.status).toBe(0);
    expect(r.stderr).toContain('using the key file');
    expect(r.stderr).toContain('COFFER_PASSPHRASE is set too and is not used');
  });

  it('a files backup skips the repository inside its tree, and leaves out --exclude patterns and an exclude file', async () => {
    const tree = join(work.dir, 'with-repo');
    await mkdir(join(tree, 'cache', 'deep'), { recursive: true });
    await writeFile(join(tree, 'keep.txt'), 'keep');
    await writeFile(join(tree, 'scratch.tmp'), 'drop');
    await writeFile(join(tree, 'cache', 'deep', 'blob'), 'drop');
    await writeFile(join(tree, 'secret.key'), 'drop');
    const excludeFile = join(work.dir, 'excludes');
    await writeFile(excludeFile, '# local secrets\n*.key\n\n');
    const inner = join(tree, 'repo');
    expect((await coffer(['--repo', inner, 'init'], env)).status).toBe(0);
    const r = await coffer(['--repo', inner, 'backup', '--path', tree, '--json', '--exclude', '*.tmp', '--exclude', 'cache/**', '--exclude-file', excludeFile], env);
    expect(r.status).toBe(0);
    const to = join(work.dir, 'with-repo-restored');
    expect((await coffer(['--repo', inner, 'restore', 'latest', '--to', to], env)).status).toBe(0);
    expect((await readdir(to)).sort()).toEqual(['cache', 'keep.txt']);
    expect(await readdir(join(to, 'cache'))).toEqual([]);
  });

  it('a drill stopped by a signal removes its sandbox', async () => {
    const big = join(work.dir, 'big');
    await mkdir(big);
    for (let i = 0; i < 6; i++) await writeFile(join(big, `f${i}`), pseudoRandom(32 << 20, 100 + i));
    const r = await coffer(['--repo', repo, 'backup', '--path', big, '--json'], env);
    expect(r.status).toBe(0);
    ids.push((JSON.parse(r.stdout) as { id: string }).id);
    const parent = join(work.dir, 'drills');
    await mkdir(parent);
    const run = startCoffer(['--repo', repo, 'drill', 'latest', '--sandbox', parent], env);
    const until = Date.now() + 20_000;
    while ((await readdir(parent)).length === 0 && Date.now() < until) await new Promise((res) => setTimeout(res, 20));
    expect((await readdir(parent)).length).toBe(1);
    run.child.kill('SIGTERM');
    const done = await run.done;
    expect(done.status).toBe(143);
    expect(done.stderr).toContain('sandbox removed');
    expect(await readdir(parent)).toEqual([]);
  });

  it('a restore that runs out of space fails naming the file (exit 23), leaves only complete files, and resumes with --delta once space is freed', async () => {
    const tree = join(work.dir, 'for-small-disk');
    await mkdir(tree);
    for (let i = 0; i < 8; i++) await writeFile(join(tree, `small-${i}`), pseudoRandom(20_000, 200 + i));
    await writeFile(join(tree, 'large'), pseudoRandom(6 << 20, 300));
    const b = await coffer(['--repo', repo, 'backup', '--path', tree, '--json'], env);
    expect(b.status).toBe(0);
    const id = (JSON.parse(b.stdout) as { id: string }).id;
    ids.push(id);
    const mnt = join(work.dir, 'small-disk');
    await mkdir(mnt);
    const run = promisify(execFile);
    await run('mount', ['-t', 'tmpfs', '-o', 'size=2m', 'tmpfs', mnt]);
    try {
      const to = join(mnt, 'restored');
      const r = await coffer(['--repo', repo, 'restore', id, '--to', to], env);
      expect(r.status).toBe(EXIT_CODES.COFFER_NO_SPACE);
      expect(r.stderr).toContain(`no space left writing ${to}/`);
      for (const name of await readdir(to)) expect((await readFile(join(to, name))).equals(await readFile(join(tree, name))), name).toBe(true);
      await run('mount', ['-o', 'remount,size=32m', mnt]);
      const again = await coffer(['--repo', repo, 'restore', id, '--to', to, '--delta'], env);
      expect(again.stderr).toBe('');
      expect(again.status).toBe(0);
      expect((await readdir(to)).sort()).toEqual((await readdir(tree)).sort());
      expect((await readFile(join(to, 'large'))).equals(await readFile(join(tree, 'large')))).toBe(true);
    } finally {
      await run('umount', [mnt]);
    }
  });

  it('foreign names under Coffer\'s prefixes are ignored with a warning; a damaged manifest is set aside by everything that does not need it, and check names it', async () => {
    const own = join(work.dir, 'junk-repo');
    expect((await coffer(['--repo', own, 'init'], env)).status).toBe(0);
    const made: string[] = [];
    for (let i = 0; i < 3; i++) {
      await writeFile(join(src, 'f'), `junk round ${i}`);
      const r = await coffer(['--repo', own, 'backup', '--path', src, '--json'], env);
      expect(r.status).toBe(0);
      made.push((JSON.parse(r.stdout) as { id: string }).id);
    }
    const index = (await readdir(join(own, 'index')))[0]!;
    await writeFile(join(own, 'backups', '.DS_Store'), '');
    await writeFile(join(own, 'index', 'junk'), 'x');
    await writeFile(join(own, 'index', `${index}~`), await readFile(join(own, 'index', index)));
    await writeFile(join(own, 'keys-notes.txt'), 'a note beside the repository');
    const damaged = (await readdir(join(own, 'backups'))).find((n) => n.includes(`-${made[1]}`))!;
    const bytes = await readFile(join(own, 'backups', damaged));
    bytes[bytes.length - 3]! ^= 0x01;
    await writeFile(join(own, 'backups', damaged), bytes);
    await rm(join(own, 'catalogue', damaged));

    const list = await coffer(['--repo', own, 'list', '--json'], env);
    expect(list.status).toBe(0);
    expect((JSON.parse(list.stdout) as { id: string }[]).map((b) => b.id)).toEqual([made[0], made[2]]);
    expect(list.stderr).toContain('ignored backups/.DS_Store');
    expect(list.stderr).toContain(`set aside: corrupt object backups/${damaged}`);
    const backup = await coffer(['--repo', own, 'backup', '--path', src], env);
    expect(backup.status).toBe(0);
    expect(backup.stderr).toContain('ignored index/junk');
    expect(backup.stderr).toContain(`ignored index/${index}~`);
    expect((await coffer(['--repo', own, 'restore', made[0]!, '--to', join(work.dir, 'junk-restored')], env)).status).toBe(0);
    expect((await coffer(['--repo', own, 'restore', made[1]!, '--to', join(work.dir, 'junk-damaged')], env)).status).toBe(EXIT_CODES.COFFER_CORRUPT_OBJECT);
    const check = await coffer(['--repo', own, 'check', '--json'], env);
    expect(check.status).toBe(EXIT_CODES.COFFER_CORRUPT_OBJECT);
    const problems = (JSON.parse(check.stdout) as { problems: { key?: string }[] }).problems;
    expect(problems.map((p) => p.key)).toEqual([`backups/${damaged}`]);
  });

  it('restore --delta goes only over an earlier restore of the same source, says what it removed, and --dry-run lists it without changing anything', async () => {
    const id = ids[16]!;
    const earlier = join(work.dir, 'delta-earlier');
    expect((await coffer(['--repo', repo, 'restore', id, '--to', earlier], env)).status).toBe(0);
    await writeFile(join(earlier, 'stray.txt'), 'not in the backup');
    const again = await coffer(['--repo', repo, 'restore', id, '--to', earlier, '--delta'], env);
    expect(again.status).toBe(0);
    expect(again.stdout).toContain('removed 1 entry');
    expect((await readdir(earlier)).sort()).toEqual(['f']);

    // A directory no restore marked: refused, and nothing in it is touched.
    const foreign = join(work.dir, 'delta-foreign');
    await mkdir(join(foreign, 'photos'), { recursive: true });
    await writeFile(join(foreign, 'photos', 'a.jpg'), 'precious');
    await writeFile(join(foreign, 'f'), 'also mine');
    const refused = await coffer(['--repo', repo, 'restore', id, '--to', foreign, '--delta'], env);
    expect(refused.status).toBe(EXIT_CODES.COFFER_TARGET_NOT_EMPTY);
    expect(refused.stderr).toContain('not an earlier restore');
    expect(refused.stderr).toContain('--force');
    expect(await readFile(join(foreign, 'photos', 'a.jpg'), 'utf8')).toBe('precious');

    const dry = await coffer(['--repo', repo, 'restore', id, '--to', foreign, '--delta', '--force', '--dry-run'], env);
    expect(dry.status).toBe(0);
    expect(dry.stdout).toContain('would remove photos');
    expect(dry.stdout).toContain('remove 1 entry');
    expect(await readFile(join(foreign, 'photos', 'a.jpg'), 'utf8')).toBe('precious');
    expect(await readFile(join(foreign, 'f'), 'utf8')).toBe('also mine');

    const forced = await coffer(['--repo', repo, 'restore', id, '--to', foreign, '--delta', '--force', '--json'], env);
    expect(forced.status).toBe(0);
    expect((JSON.parse(forced.stdout) as { removed: string[] }).removed).toEqual(['photos']);
    expect((await readdir(foreign)).sort()).toEqual(['f']);
    expect(await readFile(join(foreign, 'f'), 'utf8')).toBe('version 16\n');
    // Now marked as a restore of this source: --delta goes on without --force.
    expect((await coffer(['--repo', repo, 'restore', id, '--to', foreign, '--delta'], env)).status).toBe(0);
  });
});
