/**
 * The safety review's findings that need no PostgreSQL server, through the
 * real CLI on real files: restore_command's exit statuses, stanzas and
 * timelines at wal-push (on WAL segments built with a real long page header),
 * crafted manifests that try to write outside the target, metadata swapped or
 * copied under other names, bounded key derivation, a mirror taken while a
 * backup commits, and FileStore durability.
 */
import { readlinkSync } from 'node:fs';
import { copyFile, mkdir, open, readdir, readFile, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { EXIT_CODES } from '@coffer/cli';
import {
  backupFiles,
  chooseBackup,
  checkRepository,
  ensureStanza,
  walPush,
  FileStore,
  LocalKeyProvider,
  mirror,
  readWalRecord,
  Repository,
  sha256Hex,
  walKey,
  type BackupManifest,
  type ObjectInfo,
  type ObjectStore,
} from '@coffer/engine';
import { coffer } from './support/cli.js';
import { fakeCluster as fakeDataDir, segment, SEGMENT_SIZE } from './support/wal.js';
import { pseudoRandom, scratch } from './support/tree.js';

let work: { dir: string; cleanup: () => Promise<void> };
let keyFile: string;
const env = () => ({ COFFER_KEY_FILE: keyFile });

beforeAll(async () => {
  work = await scratch('coffer-safety-');
  keyFile = join(work.dir, 'key');
  await writeFile(keyFile, LocalKeyProvider.newKeyFileContent(), { mode: 0o600 });
});
afterAll(async () => work.cleanup());

const SEG = SEGMENT_SIZE;
const fakeCluster = (name: string, systemIdentifier: bigint) => fakeDataDir(join(work.dir, name), systemIdentifier);

async function newRepo(name: string): Promise<{ path: string; repo: Repository }> {
  const path = join(work.dir, name);
  expect((await coffer(['--repo', path, 'init'], env())).status).toBe(0);
  return { path, repo: await Repository.open(new FileStore(path), await LocalKeyProvider.fromKeyFile(keyFile)) };
}

describe('wal-push: stanzas and timelines', () => {
  const A = 7_100_000_000_000_000_001n;
  const B = 7_100_000_000_000_000_002n;
  let repo: string;
  let a: string;
  let b: string;

  beforeAll(async () => {
    ({ path: repo } = await newRepo('stanza-repo'));
    a = await fakeCluster('cluster-a', A);
    b = await fakeCluster('cluster-b', B);
    await writeFile(join(a, 'pg_wal', '000000010000000000000001'), segment(A, 1));
    await writeFile(join(b, 'pg_wal', '000000010000000000000001'), segment(B, 2));
  });

  it('the first segment creates the stanza; another system under that stanza is refused, under its own stanza accepted', async () => {
    expect((await coffer(['--repo', repo, '--stanza', 'a', 'wal-push', 'pg_wal/000000010000000000000001'], env(), { cwd: a })).status).toBe(0);
    const wrong = await coffer(['--repo', repo, '--stanza', 'a', 'wal-push', 'pg_wal/000000010000000000000001'], env(), { cwd: b });
    expect(wrong.status).toBe(EXIT_CODES.COFFER_STANZA_MISMATCH);
    expect(wrong.stderr).toContain(`system identifier ${A}`);
    expect(wrong.stderr).toContain(String(B));
    expect((await coffer(['--repo', repo, '--stanza', 'b', 'wal-push', 'pg_wal/000000010000000000000001'], env(), { cwd: b })).status).toBe(0);
    const list = await coffer(['--repo', repo, 'stanza', 'list', '--json'], env());
    expect((JSON.parse(list.stdout) as { stanza: string; history: { systemIdentifier: string; walSegmentSize: number; major: number }[] }[]).map((s) => [s.stanza, s.history[0]!.systemIdentifier, s.history[0]!.major, s.history[0]!.walSegmentSize])).toEqual([
      ['a', String(A), 15, SEG],
      ['b', String(B), 15, SEG],
    ]);
  });

  it('a segment on a timeline whose history is not archived is refused; with its history file it is accepted', async () => {
    await writeFile(join(a, 'pg_wal', '000000020000000000000002'), segment(A, 3));
    const refused = await coffer(['--repo', repo, '--stanza', 'a', 'wal-push', 'pg_wal/000000020000000000000002'], env(), { cwd: a });
    expect(refused.status).toBe(EXIT_CODES.COFFER_STANZA_MISMATCH);
    expect(refused.stderr).toContain('00000002.history');
    expect(refused.stderr).toContain('archive_mode = off');
    // A history whose parent timeline the stanza does not know is refused too.
    await writeFile(join(a, 'pg_wal', '00000003.history'), '1\t0/2000000\tno recovery target specified\n2\t0/3000000\tno recovery target specified\n');
    expect((await coffer(['--repo', repo, '--stanza', 'a', 'wal-push', 'pg_wal/00000003.history'], env(), { cwd: a })).status).toBe(EXIT_CODES.COFFER_STANZA_MISMATCH);
    // The cluster's own history file in pg_wal is archived first, then the segment.
    await writeFile(join(a, 'pg_wal', '00000002.history'), '1\t0/2000000\tno recovery target specified\n');
    expect((await coffer(['--repo', repo, '--stanza', 'a', 'wal-push', 'pg_wal/000000020000000000000002'], env(), { cwd: a })).status).toBe(0);
    expect((await coffer(['--repo', repo, '--stanza', 'a', 'wal-push', 'pg_wal/00000003.history'], env(), { cwd: a })).status).toBe(0);
  });

  it('a segment whose header names another segment size, or no header at all, is refused naming the file', async () => {
    await writeFile(join(a, 'pg_wal', '000000010000000000000009'), Buffer.alloc(SEG));
    const r = await coffer(['--repo', repo, '--stanza', 'a', 'wal-push', 'pg_wal/000000010000000000000009'], env(), { cwd: a });
    expect(r.status).toBe(EXIT_CODES.COFFER_SOURCE_ERROR);
    expect(r.stderr).toContain('000000010000000000000009');
  });
});

describe("wal-fetch: exit statuses PostgreSQL reads as 'not archived' only when nothing is archived", () => {
  const S = 7_200_000_000_000_000_001n;
  let repo: string;
  let repository: Repository;
  let pgdata: string;
  const names = ['000000010000000000000001', '000000010000000000000002', '000000010000000000000003'];
  const fetch = (name: string, extra: string[] = []) => coffer(['--repo', repo, ...extra, 'wal-fetch', '--prefetch', '0', name, `pg_wal/RECOVERYXLOG`], env(), { cwd: pgdata });

  beforeAll(async () => {
    ({ path: repo, repo: repository } = await newRepo('fetch-repo'));
    pgdata = await fakeCluster('fetching', S);
    for (const [i, n] of names.entries()) {
      await writeFile(join(pgdata, 'pg_wal', n), segment(S, 10 + i));
      expect((await coffer(['--repo', repo, 'wal-push', `pg_wal/${n}`], env(), { cwd: pgdata })).status).toBe(0);
    }
    await writeFile(join(pgdata, 'recovery.signal'), '');
  });

  const packOf = async (name: string) => {
    const found = (await readWalRecord(repository, { stanza: 'main', systemIdentifier: String(S) }, name))!;
    const pack = Object.values(found.record.locations)[0]![0];
    return join(repo, 'data', pack.slice(0, 2), pack);
  };

  it('fetches an archived segment (0) and says "not archived" (1) only for a segment the store does not hold', async () => {
    const ok = await fetch(names[0]!);
    expect(ok.stderr).toBe('');
    expect(ok.status).toBe(0);
    expect(sha256Hex(await readFile(join(pgdata, 'pg_wal', 'RECOVERYXLOG')))).toBe(sha256Hex(segment(S, 10)));
    const absent = await fetch('000000010000000000000004');
    expect(absent.status).toBe(1);
  });

  it('a missing or corrupt pack, a corrupt record, or another repository: 255 in archive recovery (fatal), 1 in standby mode', async () => {
    const pack = await packOf(names[1]!);
    const saved = await readFile(pack);
    try {
      await rm(pack);
      const missing = await fetch(names[1]!);
      expect(missing.status).toBe(255);
      expect(missing.stderr).toContain('missing object');
      expect(missing.stderr).toContain('recovery stops here');
      const flipped = Buffer.from(saved);
      flipped[100]! ^= 1;
      await writeFile(pack, flipped);
      expect((await fetch(names[1]!)).status).toBe(255);
      await writeFile(join(pgdata, 'standby.signal'), '');
      const standby = await fetch(names[1]!);
      expect(standby.status).toBe(1);
      expect(standby.stderr).toContain('corrupt object');
      await rm(join(pgdata, 'standby.signal'));
    } finally {
      await writeFile(pack, saved);
    }
    // A record damaged in place.
    const recordPath = join(repo, ...walKey({ stanza: 'main', systemIdentifier: String(S) }, names[2]!).split('/'));
    const record = await readFile(recordPath);
    try {
      const bad = Buffer.from(record);
      bad[bad.length - 5]! ^= 0x10;
      await writeFile(recordPath, bad);
      expect((await fetch(names[2]!)).status).toBe(255);
    } finally {
      await writeFile(recordPath, record);
    }
    // A repository that cannot be opened (wrong location) is not "not archived" either.
    const nowhere = await coffer(['--repo', join(work.dir, 'no-such-repo'), 'wal-fetch', names[0]!, 'pg_wal/RECOVERYXLOG'], env(), { cwd: pgdata });
    expect(nowhere.status).toBe(255);
    expect((await fetch(names[1]!)).status).toBe(0);
  });

  it('a WAL record copied under another segment\'s name is refused, not served', async () => {
    const scope = { stanza: 'main', systemIdentifier: String(S) };
    const from = join(repo, ...walKey(scope, names[0]!).split('/'));
    const fake = '000000010000000000000007';
    const to = join(repo, ...walKey(scope, fake).split('/'));
    await copyFile(from, to);
    try {
      const r = await fetch(fake);
      expect(r.status).toBe(255);
      expect(r.stderr).toContain(`holds the record of main/${S}/${names[0]}`);
    } finally {
      await rm(to);
    }
  });

  it('a pinned repository id refuses another repository; a stanza or system it does not hold is fatal', async () => {
    expect((await fetch(names[0]!, ['--repository-id', repository.config.repositoryId])).status).toBe(0);
    const other = await fetch(names[0]!, ['--repository-id', '00000000-0000-4000-8000-000000000000']);
    expect(other.status).toBe(255);
    expect(other.stderr).toContain('not the expected');
    expect((await fetch(names[0]!, ['--stanza', 'nosuch'])).status).toBe(255);
    const r = await coffer(['--repo', repo, 'wal-fetch', '--system-id', '42', names[0]!, 'pg_wal/RECOVERYXLOG'], env(), { cwd: pgdata });
    expect(r.status).toBe(255);
  });

  it('prefetches the next segments in one background process per spool', async () => {
    const spool = join(pgdata, 'pg_wal', '.coffer-spool');
    await rm(spool, { recursive: true, force: true });
    await mkdir(spool, { recursive: true });
    // A live prefetcher holds the spool: no second one starts.
    await writeFile(join(spool, '.prefetch.lock'), String(process.pid));
    expect((await coffer(['--repo', repo, 'wal-fetch', '--prefetch', '2', names[0]!, 'pg_wal/RECOVERYXLOG'], env(), { cwd: pgdata })).status).toBe(0);
    await new Promise((r) => setTimeout(r, 1500));
    expect((await readdir(spool)).filter((n) => !n.startsWith('.'))).toEqual([]);
    // A lock left by a dead process does not stop the next one.
    await writeFile(join(spool, '.prefetch.lock'), '2147483646');
    expect((await coffer(['--repo', repo, 'wal-fetch', '--prefetch', '2', names[0]!, 'pg_wal/RECOVERYXLOG'], env(), { cwd: pgdata })).status).toBe(0);
    const until = Date.now() + 20_000;
    while ((await readdir(spool)).filter((n) => !n.startsWith('.')).length < 2 && Date.now() < until) await new Promise((r) => setTimeout(r, 100));
    expect((await readdir(spool)).filter((n) => !n.startsWith('.')).sort()).toEqual(names.slice(1));
    const fromSpool = await fetch(names[1]!);
    expect(fromSpool.status).toBe(0);
    expect(sha256Hex(await readFile(join(pgdata, 'pg_wal', 'RECOVERYXLOG')))).toBe(sha256Hex(segment(S, 11)));
    // It stays a while at the archive's end; the test ends with it (it writes its audit record as it goes).
    const gone = Date.now() + 30_000;
    while ((await readdir(spool)).includes('.prefetch.lock') && Date.now() < gone) await new Promise((r) => setTimeout(r, 100));
    expect(await readdir(spool)).not.toContain('.prefetch.lock');
  });

  it("a history file asked for while backup_label is there starts the prefetcher at the backup's first segment", async () => {
    const spool = join(pgdata, 'pg_wal', '.coffer-spool');
    await rm(spool, { recursive: true, force: true });
    await writeFile(join(pgdata, 'backup_label'), `START WAL LOCATION: 0/1000028 (file ${names[0]})\nCHECKPOINT LOCATION: 0/1000060\n`);
    try {
      // Recovery's first call: the next timeline's history, not archived.
      const history = await coffer(['--repo', repo, 'wal-fetch', '--prefetch', '2', '00000002.history', 'pg_wal/RECOVERYHISTORY'], env(), { cwd: pgdata });
      expect(history.status).toBe(1);
      const until = Date.now() + 20_000;
      // Fetched a few at a time: either may land first.
      const both = async () => {
        const n = await readdir(spool).catch(() => [] as string[]);
        return n.includes(names[0]!) && n.includes(names[1]!);
      };
      while (!(await both()) && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
      const spooled = await readdir(spool);
      expect(spooled).toEqual(expect.arrayContaining([names[0], names[1]]));
      // Recovery stands just before the backup's first segment, so a call for it waits for the prefetcher.
      expect(await readFile(join(spool, '.wanted'), 'utf8')).toBe('000000010000000000000000');
      const first = await coffer(['--repo', repo, 'wal-fetch', '--prefetch', '2', names[0]!, 'pg_wal/RECOVERYXLOG'], env(), { cwd: pgdata });
      expect(first.status).toBe(0);
      expect(sha256Hex(await readFile(join(pgdata, 'pg_wal', 'RECOVERYXLOG')))).toBe(sha256Hex(segment(S, 10)));
    } finally {
      await rm(join(pgdata, 'backup_label'), { force: true });
      const gone = Date.now() + 30_000;
      while ((await readdir(spool).catch(() => [] as string[])).includes('.prefetch.lock') && Date.now() < gone) await new Promise((r) => setTimeout(r, 100));
    }
    expect(await readdir(spool)).not.toContain('.prefetch.lock');
  });
});

describe('choosing the backup for a recovery target', () => {
  let repository: Repository;
  const sysid = '7300000000000000001';
  const made = async (label: string, timeline: number, stopLsn: string, stopNextXid: bigint) => {
    const root = { path: '.', type: 'dir' as const, mode: 0o700, uid: 0, gid: 0, mtimeNs: '0' };
    const stats = { files: 0, dirs: 1, symlinks: 0, bytes: 0, unchangedFiles: 0, newChunks: 0, newBytes: 0, storedBytes: 0, skipped: [] };
    const postgres = {
      versionNum: 150000, version: 'PostgreSQL 15', systemIdentifier: sysid, timeline, startLsn: '0/1000000', stopLsn, stopNextXid: String(stopNextXid),
      startTime: '2026-01-01T00:00:00.000Z', stopTime: '2026-01-01T00:00:01.000Z', standby: false, dataChecksums: true, walSegmentSize: SEG,
      dataDirectory: '/nowhere', backupLabel: '', tablespaceMap: '', tablespaces: [], archiveChecked: true,
    };
    return repository.writeManifest({ format: 2, kind: 'postgres', label, startedAt: '2026-01-01T00:00:00.000Z', finishedAt: '2026-01-01T00:00:01.000Z', hostname: 'h', source: '/nowhere', tags: [], stats, entries: [root], stanza: 'main', postgres });
  };

  beforeAll(async () => {
    ({ repo: repository } = await newRepo('choose-repo'));
    await ensureStanza(repository, 'main', { systemIdentifier: sysid });
  });

  it('compares transaction ids with their epoch: a 32-bit xid after a wraparound still finds the backup before it', async () => {
    const b1 = await made('20260101T000001_000Z', 1, '0/5000000', 4_294_967_000n);
    const b2 = await made('20260101T000002_000Z', 1, '0/6000000', 2n ** 32n + 200n);
    expect((await chooseBackup(repository, { xid: '100' })).key).toBe(b1);
    expect((await chooseBackup(repository, { xid: '300' })).key).toBe(b2);
    expect((await chooseBackup(repository, { xid: String(2n ** 32n + 250n) })).key).toBe(b2);
  });

  it('on the target timeline\'s history: a backup taken on timeline 1 after timeline 2 branched off is not chosen for timeline 2', async () => {
    const before = await made('20260101T000003_000Z', 1, '0/7000000', 2n ** 32n + 300n);
    const after = await made('20260101T000004_000Z', 1, '0/9000000', 2n ** 32n + 400n);
    const dir = join(work.dir, 'choose-wal', 'pg_wal');
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, '00000002.history'), '1\t0/8000000\tbefore 2026-01-01 00:00:02+00\n');
    await walPush(repository, join(dir, '00000002.history'));
    expect((await chooseBackup(repository, { timeline: 'current' })).key).toBe(after);
    expect((await chooseBackup(repository, {})).key).toBe(before);
    expect((await chooseBackup(repository, { timeline: '2', lsn: '0/9500000' })).key).toBe(before);
    expect((await chooseBackup(repository, { timeline: '1' })).key).toBe(after);
  });
});

describe('restore never writes outside its target', () => {
  let repo: string;
  let repository: Repository;
  let base: BackupManifest;

  beforeAll(async () => {
    ({ path: repo, repo: repository } = await newRepo('craft-repo'));
    const src = join(work.dir, 'craft-src');
    await mkdir(join(src, 'd'), { recursive: true });
    await writeFile(join(src, 'd', 'x'), 'written by a crafted manifest\n');
    base = (await backupFiles(repository, src)).manifest;
  });

  const crafted = async (label: string, entries: BackupManifest['entries']) => {
    await repository.writeManifest({ ...base, label, entries });
    return label;
  };

  it('refuses a file under a symlink, .., absolute paths and NUL, writing nothing anywhere', async () => {
    const outside = join(work.dir, 'outside');
    await mkdir(outside, { recursive: true });
    const file = base.entries.find((e) => e.path === 'd/x')!;
    const root = base.entries.find((e) => e.path === '.')!;
    const cases = [
      await crafted('20300101T000000_001Z', [root, { ...root, path: 'a', type: 'symlink', target: outside }, { ...file, path: 'a/x' }]),
      await crafted('20300101T000000_002Z', [root, { ...file, path: '../x' }]),
      await crafted('20300101T000000_003Z', [root, { ...file, path: `${outside}/x` }]),
      await crafted('20300101T000000_004Z', [root, { ...file, path: 'x\0y' }]),
      await crafted('20300101T000000_005Z', [root, { ...file, path: 'nodir/x' }]),
    ];
    for (const [i, label] of cases.entries()) {
      const to = join(work.dir, `craft-target-${i}`);
      const r = await coffer(['--repo', repo, 'restore', label, '--to', to], env());
      expect(r.status, label).toBe(EXIT_CODES.COFFER_CORRUPT_OBJECT);
      expect(r.stderr).toMatch(/escape the restore target|not a directory/);
      expect(await readdir(outside)).toEqual([]);
      expect(await readdir(to).catch(() => [])).toEqual([]);
    }
  });

  it('a file whose chunks do not add up to its size is refused before anything is written', async () => {
    const file = base.entries.find((e) => e.path === 'd/x')!;
    const label = await crafted('20300101T000000_006Z', [...base.entries.filter((e) => e.path !== 'd/x'), { ...file, size: (file.size ?? 0) + 1 }]);
    const to = join(work.dir, 'craft-size');
    const r = await coffer(['--repo', repo, 'restore', label, '--to', to], env());
    expect(r.status).toBe(EXIT_CODES.COFFER_CORRUPT_OBJECT);
    expect(r.stderr).toContain('add up to');
    expect(await readdir(to).catch(() => [])).toEqual([]);
  });

  it('an old manifest copied under a newer label is refused', async () => {
    const keys = (await repository.objects.list('backups/')).map((o) => o.key).sort();
    const first = keys[0]!;
    const sha = first.slice(-64);
    await copyFile(join(repo, ...first.split('/')), join(repo, 'backups', `20991231T000000_000Z-${sha}`));
    const r = await coffer(['--repo', repo, 'restore', 'latest', '--to', join(work.dir, 'craft-latest')], env());
    expect(r.status).toBe(EXIT_CODES.COFFER_CORRUPT_OBJECT);
    expect(r.stderr).toContain(`holds the manifest of backup ${base.label}`);
    await rm(join(repo, 'backups', `20991231T000000_000Z-${sha}`));
  });
});

describe('the repository config cannot be swapped or made to cost without bound', () => {
  it('with the repository id pinned, a config of another repository is refused before any key is tried', async () => {
    const { path: a, repo: ra } = await newRepo('pin-a');
    const { path: b } = await newRepo('pin-b');
    // Same key file: only the pin tells the two apart.
    await copyFile(join(b, 'config'), join(a, 'config'));
    const r = await coffer(['--repo', a, 'list'], { ...env(), COFFER_REPOSITORY_ID: ra.config.repositoryId });
    expect(r.status).toBe(EXIT_CODES.COFFER_CORRUPT_OBJECT);
    expect(r.stderr).toContain('not the expected');
  });

  it('new passphrase wrappings use scrypt N=2^17; a config asking for unbounded cost is refused with a typed error', async () => {
    const path = join(work.dir, 'kdf');
    expect((await coffer(['--repo', path, 'init'], { COFFER_PASSPHRASE: 'kdf passphrase' })).status).toBe(0);
    const outer = JSON.parse(await readFile(join(path, 'config'), 'utf8')) as { coffer: string; sha256: string; body: string };
    const body = JSON.parse(outer.body) as { keys: { wrappings: { params: Record<string, number | string> }[] }[] };
    expect(body.keys[0]!.wrappings[0]!.params.N).toBe(1 << 17);
    body.keys[0]!.wrappings[0]!.params.N = 2 ** 30;
    const text = JSON.stringify(body);
    await writeFile(join(path, 'config'), JSON.stringify({ ...outer, body: text, sha256: sha256Hex(Buffer.from(text)) }));
    const r = await coffer(['--repo', path, 'list'], { COFFER_PASSPHRASE: 'kdf passphrase' });
    expect(r.status).toBe(EXIT_CODES.COFFER_UNSUPPORTED_FORMAT);
    expect(r.stderr).toContain('N=1073741824');
  });
});

describe('mirror copies a consistent snapshot', () => {
  it('a backup that commits while the mirror runs never reaches the destination without its packs', async () => {
    const { path: from, repo: source } = await newRepo('mirror-src');
    const src = join(work.dir, 'mirror-tree');
    await mkdir(src, { recursive: true });
    await writeFile(join(src, 'one'), pseudoRandom(200_000, 5));
    await backupFiles(source, src);
    const inner = new FileStore(from);
    let fired = false;
    // Runs a whole backup (new packs, index, manifest) right after the mirror has listed the source's packs.
    const racing: ObjectStore = {
      properties: inner.properties,
      put: (k, d) => inner.put(k, d),
      get: (k, r) => inner.get(k, r),
      head: (k) => inner.head(k),
      delete: (k) => inner.delete(k),
      async *list(prefix: string): AsyncIterable<ObjectInfo> {
        yield* inner.list(prefix);
        if (prefix === 'data/' && !fired) {
          fired = true;
          await writeFile(join(src, 'two'), pseudoRandom(300_000, 6));
          await backupFiles(source, src);
        }
      },
    };
    const to = join(work.dir, 'mirror-dst');
    const report = await mirror(racing, new FileStore(to));
    expect(fired).toBe(true);
    expect(report.ok).toBe(true);
    const copy = await Repository.open(new FileStore(to), await LocalKeyProvider.fromKeyFile(keyFile));
    const check = await checkRepository(copy, { readData: true });
    expect(check.problems.map((p) => p.message)).toEqual([]);
    // The next run copies the rest.
    expect((await mirror(new FileStore(from), new FileStore(to))).ok).toBe(true);
    expect((await checkRepository(copy)).backups).toBe(2);
  });
});

describe('FileStore durability', () => {
  it('fsyncs every directory a put creates in its parent, and removes temporary files left by dead writers', async () => {
    const root = join(work.dir, 'durable-store');
    const store = new FileStore(root);
    await store.put('config', Buffer.from('x'));
    await mkdir(join(root, '.tmp'), { recursive: true });
    const stale = join(root, '.tmp', 'dead.part');
    const fresh = join(root, '.tmp', 'busy.part');
    await writeFile(stale, 'left by a writer that died');
    await writeFile(fresh, 'being written right now');
    const old = new Date(Date.now() - 2 * 3600_000);
    await utimes(stale, old, old);

    const probe = await open(join(root, 'config'), 'r');
    const proto = Object.getPrototypeOf(probe) as { sync: () => Promise<void> };
    await probe.close();
    const synced: string[] = [];
    const spy = vi.spyOn(proto, 'sync').mockImplementation(async function (this: { fd: number }) {
      synced.push(readlinkSync(`/proc/self/fd/${this.fd}`));
    });
    try {
      await new FileStore(root).put('data/ab/abcdef', Buffer.from('pack bytes'));
    } finally {
      spy.mockRestore();
    }
    expect(synced).toEqual(expect.arrayContaining([root, join(root, 'data'), join(root, 'data', 'ab')]));
    await expect(stat(stale)).rejects.toThrow();
    expect((await stat(fresh)).isFile()).toBe(true);
  });
});
