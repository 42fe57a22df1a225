/**
 * Recovery that cannot end short and restores that cannot land where they
 * must not, on real clusters: a damaged WAL pack in the middle of a restore
 * to the end of the archive stops recovery (never a promotion with fewer
 * rows) until it is repaired; two clusters share one repository under their
 * own stanzas; a cluster made with `initdb -X` restores with pg_wal inside
 * the target; an interrupted restore never leaves a pg_control behind; and a
 * backup whose WAL does not reach the repository is not committed.
 */
import { existsSync } from 'node:fs';
import { lstat, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EXIT_CODES } from '@coffer/cli';
import { FileStore, LocalKeyProvider, readWalRecord, Repository } from '@coffer/engine';
import { coffer, startCoffer } from '../support/cli.js';
import { Cluster, cofferAsPostgres, debianInstall, pgScratch, runAsPostgres, stopArchivers } from '../support/pg.js';

const install = debianInstall();
const passphrase = 'safety passphrase';
const env = { COFFER_PASSPHRASE: passphrase };
let work: { dir: string; cleanup: () => Promise<void> };
let repo: string;
let a: Cluster;
let b: Cluster;
let restores = 0;

const count = async (c: Cluster, table: string) => Number((await c.query<{ n: string }>(`SELECT count(*)::text AS n FROM ${table}`))[0]!.n);

async function backup(c: Cluster, stanza: string, extra: string[] = []) {
  const r = await cofferAsPostgres(['--repo', repo, '--stanza', stanza, 'backup', '--json', ...extra], { ...env, ...c.pgEnv });
  return { ...r, info: r.status === 0 ? (JSON.parse(r.stdout) as { id: string; postgres: { systemIdentifier: string } }) : undefined };
}

async function restoreTo(args: string[]): Promise<string> {
  const to = join(work.dir, `restore-${restores++}`);
  const r = await cofferAsPostgres(['--repo', repo, 'restore', '--to', to, ...args], env);
  expect(r.stderr).toBe('');
  expect(r.status).toBe(0);
  return to;
}

async function recoveredCount(dir: string, table: string): Promise<number> {
  const c = await Cluster.adopt(install, dir, { passphrase });
  await c.start();
  try {
    await c.waitPromoted();
    return await count(c, table);
  } finally {
    await c.stop();
  }
}

beforeAll(async () => {
  work = await pgScratch('coffer-safety-pg-');
  repo = join(work.dir, 'repo');
  expect((await cofferAsPostgres(['--repo', repo, 'init'], env)).status).toBe(0);
  a = await Cluster.create(install, work.dir, { archiveRepo: repo, passphrase, checksums: true });
  const walDir = join(work.dir, 'b-wal');
  b = await Cluster.create(install, work.dir, { archiveRepo: repo, stanza: 'b', passphrase, checksums: true, walDir });
  await a.start();
  await b.start();
  for (const c of [a, b]) {
    await c.query('CREATE TABLE t (id int PRIMARY KEY, filler text)');
    await c.query(`INSERT INTO t SELECT g, repeat(md5(g::text), 8) FROM generate_series(1, 5000) g`);
  }
  expect((await backup(a, 'main')).status).toBe(0);
  expect((await backup(b, 'b')).status).toBe(0);
  await a.query(`INSERT INTO t SELECT g, 'a' FROM generate_series(5001, 6000) g`);
  await b.query(`INSERT INTO t SELECT g, 'b' FROM generate_series(5001, 7000) g`);
  await a.archiveNow();
  await b.archiveNow();
}, 180_000);

afterAll(async () => {
  await a?.stop();
  await b?.stop();
  await work?.cleanup();
});

describe('recovery safety on real clusters', () => {
  it('two clusters archive into one repository under their own stanzas and each recovers exactly; one cluster\'s WAL under the other\'s stanza is refused', async () => {
    const toA = await restoreTo(['latest']);
    expect(await recoveredCount(toA, 't')).toBe(6000);
    const toB = await restoreTo(['--stanza', 'b']);
    // initdb -X: the source's pg_wal is a link; the restore's is a real directory inside the target.
    expect((await lstat(join(b.data, 'pg_wal'))).isSymbolicLink()).toBe(true);
    expect((await lstat(join(toB, 'pg_wal'))).isDirectory()).toBe(true);
    expect(await readFile(join(toB, 'postgresql.auto.conf'), 'utf8')).toContain(`archive_mode = 'off'`);
    expect(await recoveredCount(toB, 't')).toBe(7000);
    // Promoted onto timeline 2, the restored copy wrote its history into its own pg_wal, not the source's WAL directory.
    expect(await readdir(join(toB, 'pg_wal'))).toContain('00000002.history');
    expect(await readdir(join(work.dir, 'b-wal'))).not.toContain('00000002.history');

    // Listing and choosing are per stanza.
    const listed = JSON.parse((await cofferAsPostgres(['--repo', repo, '--stanza', 'b', 'list', '--json'], env)).stdout) as { stanza: string; postgres: { systemIdentifier: string } }[];
    expect(listed.length).toBeGreaterThan(0);
    expect(new Set(listed.map((x) => `${x.stanza}/${x.postgres.systemIdentifier}`))).toEqual(new Set([`b/${(await b.query<{ s: string }>('SELECT system_identifier::text AS s FROM pg_control_system()'))[0]!.s}`]));
    // A segment of A's, fetched from the repository, pushed as B's.
    const seg = (await a.query<{ f: string }>('SELECT pg_walfile_name(pg_current_wal_lsn()) AS f'))[0]!.f;
    const prev = `${seg.slice(0, 16)}${(parseInt(seg.slice(16), 16) - 1).toString(16).toUpperCase().padStart(8, '0')}`;
    const tmp = join(work.dir, 'cross', 'pg_wal');
    await cofferAsPostgres(['--repo', repo, 'wal-fetch', '--prefetch', '0', prev, join(work.dir, prev)], env);
    await runAsPostgres('mkdir', ['-p', tmp]);
    await runAsPostgres('cp', [join(work.dir, prev), join(tmp, prev)]);
    const wrong = await cofferAsPostgres(['--repo', repo, '--stanza', 'b', 'wal-push', join(tmp, prev)], env);
    expect(wrong.status).toBe(EXIT_CODES.COFFER_STANZA_MISMATCH);
    expect(wrong.stderr).toContain('system identifier');
  }, 180_000);

  it('a damaged WAL pack in the middle of the archive stops recovery (not a promotion with fewer rows); repaired, recovery completes with every row', async () => {
    await a.query('CREATE TABLE m (id int PRIMARY KEY)');
    const segments: string[] = [];
    for (let batch = 0; batch < 3; batch++) {
      await a.query(`INSERT INTO m SELECT g FROM generate_series(${batch * 1000 + 1}, ${batch * 1000 + 1000}) g`);
      segments.push((await a.query<{ f: string }>('SELECT pg_walfile_name(pg_current_wal_lsn()) AS f'))[0]!.f);
      await a.archiveNow();
    }
    const sysid = (await a.query<{ s: string }>('SELECT system_identifier::text AS s FROM pg_control_system()'))[0]!.s;
    const repository = await Repository.open(new FileStore(repo), LocalKeyProvider.fromPassphrase(passphrase));
    const found = (await readWalRecord(repository, { stanza: 'main', systemIdentifier: sysid }, segments[1]!))!;
    const packSha = Object.values(found.record.locations)[0]![0];
    const pack = join(repo, 'data', packSha.slice(0, 2), packSha);
    const good = await readFile(pack);
    const bad = Buffer.from(good);
    bad[Math.floor(bad.length / 3)]! ^= 0x40;

    const to = await restoreTo(['latest']);
    await writeFile(pack, bad);
    const c = await Cluster.adopt(install, to, { passphrase });
    try {
      await c.start();
      // Recovery reaches the damaged segment, and the server stops instead of promoting.
      const until = Date.now() + 60_000;
      while (existsSync(join(to, 'postmaster.pid')) && Date.now() < until) await new Promise((r) => setTimeout(r, 200));
      const log = await c.log();
      expect(log).toContain(`corrupt object data/${packSha.slice(0, 2)}/${packSha}`);
      expect(log).toMatch(/FATAL: +could not restore file "[0-9A-F]{24}" from archive/);
      expect(log).not.toContain('archive recovery complete');
      expect(existsSync(join(to, 'postmaster.pid'))).toBe(false);
      expect(existsSync(join(to, 'pg_wal', '00000002.history'))).toBe(false);

      await writeFile(pack, good);
      await c.start();
      await c.waitPromoted();
      expect(await count(c, 'm')).toBe(3000);
    } finally {
      await writeFile(pack, good);
      await c.stop();
    }
  }, 240_000);

  it('a restore killed at any moment leaves no global/pg_control (the cluster cannot start half-restored); --delta completes it, and an interrupted --delta removes it first', async () => {
    const label = (await backup(a, 'main')).info!.id;
    const timed = join(work.dir, 'timed');
    const t0 = performance.now();
    expect((await coffer(['--repo', repo, 'restore', label, '--to', timed], env)).status).toBe(0);
    const full = performance.now() - t0;
    expect(existsSync(join(timed, 'global', 'pg_control'))).toBe(true);
    const { snapshot } = await import('../support/tree.js');
    const restored = async (dir: string) => {
      const snap = await snapshot(dir);
      snap.delete('.coffer-restore');
      return snap;
    };
    let killed = 0;
    // Kills land at random moments: go on until three landed mid-restore (each trial is checked either way).
    for (let i = 0; i < 24 && (i < 8 || killed < 3); i++) {
      const to = join(work.dir, `killed-${i}`);
      const run = startCoffer(['--repo', repo, 'restore', label, '--to', to, ...(i % 2 ? ['--delta'] : [])], env);
      const timer = setTimeout(() => run.child.kill('SIGKILL'), 150 + Math.random() * (full - 150));
      const r = await run.done;
      clearTimeout(timer);
      if (r.signal !== 'SIGKILL') continue;
      // pg_control is renamed into place last: present, the kill came while the restore was exiting, and resuming
      // must find every file complete — it writes nothing but pg_control, which a delta restore always takes away first.
      if (existsSync(join(to, 'global', 'pg_control'))) {
        const again = await coffer(['--repo', repo, 'restore', label, '--to', to, '--delta', '--json'], env);
        expect(again.status, again.stderr).toBe(0);
        expect((JSON.parse(again.stdout) as { bytesWritten: number }).bytesWritten, `restore killed after pg_control was in place (trial ${i})`).toBeLessThanOrEqual(8192);
        continue;
      }
      killed++;
      const resumed = await coffer(['--repo', repo, 'restore', label, '--to', to, '--delta'], env);
      expect(resumed.stderr).toBe('');
      expect(resumed.status).toBe(0);
      expect(existsSync(join(to, 'global', 'pg_control'))).toBe(true);
    }
    expect(killed).toBeGreaterThanOrEqual(3);
    // A delta restore of an older backup over a complete one, killed at random: either nothing has changed
    // yet, or pg_control and backup_label are gone, or it had finished — never changed files beside a pg_control.
    const older = (JSON.parse((await coffer(['--repo', repo, 'list', '--json'], env)).stdout) as { id: string; stanza?: string }[]).find((x) => x.stanza === 'main')!.id;
    const comparable = () => restored(timed);
    // What the older backup's restore is once complete: a kill that lands while it is exiting finds that.
    const olderFull = join(work.dir, 'older-full');
    expect((await coffer(['--repo', repo, 'restore', older, '--to', olderFull], env)).status).toBe(0);
    const complete = await restored(olderFull);
    // Renaming pg_control into place is the restore's commit point; the rename touches global/, whose recorded
    // time is put back just after, so a kill between the two leaves a complete restore with only that time newer.
    // The files the restore writes itself (backup_label, the recovery settings, the signal file) carry the time
    // they were written, as do the directories they are written into: compare those by content alone.
    const restoreWritten = ['.', 'global', 'pg_wal', 'pg_wal/archive_status', 'backup_label', 'postgresql.auto.conf', 'recovery.signal'];
    const withoutRestoreTimes = (snap: Awaited<ReturnType<typeof restored>>) => {
      const copy = new Map(snap);
      for (const p of restoreWritten) {
        const e = copy.get(p);
        if (e) copy.set(p, { ...e, mtimeUs: 0n });
      }
      return copy;
    };
    let interrupted = 0;
    for (let i = 0; i < 24 && (i < 6 || interrupted < 1); i++) {
      expect((await coffer(['--repo', repo, 'restore', label, '--to', timed, '--delta'], env)).status).toBe(0);
      const before = await comparable();
      const run = startCoffer(['--repo', repo, 'restore', older, '--to', timed, '--delta'], env);
      const timer = setTimeout(() => run.child.kill('SIGKILL'), 150 + Math.random() * full);
      const r = await run.done;
      clearTimeout(timer);
      if (r.signal !== 'SIGKILL') continue;
      if (!existsSync(join(timed, 'global', 'pg_control'))) {
        interrupted++;
        continue;
      }
      // pg_control in place: the restore had not begun changing files, or it had finished (pg_control goes in last).
      const now = await comparable();
      if (!isDeepStrictEqual(withoutRestoreTimes(now), withoutRestoreTimes(complete))) expect(now).toEqual(before);
    }
    expect(interrupted).toBeGreaterThanOrEqual(1);
  }, 480_000);

  it('--db takes a libpq keyword/value string as well as a URI; an unknown keyword is refused by name', async () => {
    const kv = `host=127.0.0.1 port=${a.port} user=postgres dbname='postgres' application_name=nightly`;
    const r = await cofferAsPostgres(['--repo', repo, 'backup', '--db', kv, '--json'], env);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const bad = await cofferAsPostgres(['--repo', repo, 'backup', '--db', `host=127.0.0.1 colour=blue`], env);
    expect(bad.status).toBe(EXIT_CODES.COFFER_INVALID_ARGUMENT);
    expect(bad.stderr).toContain('colour');
  }, 120_000);

  it('a target time without a zone is refused; a --delta into a directory that is neither a restore nor this cluster\'s is refused', async () => {
    const r = await cofferAsPostgres(['--repo', repo, 'restore', '--to', join(work.dir, 'no-zone'), '--target-time', '2026-11-29 10:00:00'], env);
    expect(r.status).toBe(EXIT_CODES.COFFER_INVALID_ARGUMENT);
    expect(r.stderr).toContain('no time zone');
    const stranger = join(work.dir, 'stranger');
    await runAs(['mkdir', '-p', join(stranger, 'keep')]);
    await runAs(['touch', join(stranger, 'keep', 'precious')]);
    const d = await cofferAsPostgres(['--repo', repo, 'restore', 'latest', '--to', stranger, '--delta'], env);
    expect(d.status).toBe(EXIT_CODES.COFFER_TARGET_NOT_EMPTY);
    expect(existsSync(join(stranger, 'keep', 'precious'))).toBe(true);
    // An earlier restore of another stanza, and (its marker gone) another system's data directory: refused too.
    const bCopy = join(work.dir, 'b-copy');
    expect((await cofferAsPostgres(['--repo', repo, '--stanza', 'b', 'restore', '--to', bCopy], env)).status).toBe(0);
    const otherStanza = await cofferAsPostgres(['--repo', repo, 'restore', 'latest', '--to', bCopy, '--delta'], env);
    expect(otherStanza.status).toBe(EXIT_CODES.COFFER_TARGET_NOT_EMPTY);
    expect(otherStanza.stderr).toContain('stanza b');
    await rm(join(bCopy, '.coffer-restore'));
    const foreign = await cofferAsPostgres(['--repo', repo, 'restore', 'latest', '--to', bCopy, '--delta'], env);
    expect(foreign.status).toBe(EXIT_CODES.COFFER_TARGET_NOT_EMPTY);
    expect(foreign.stderr).toContain('not of stanza main');
    // The same cluster's own directory is what in-place recovery works over.
    expect((await cofferAsPostgres(['--repo', repo, '--stanza', 'b', 'restore', '--to', bCopy, '--delta'], env)).status).toBe(0);
  }, 180_000);

  it('a backup whose WAL does not reach this repository fails within the timeout naming the segment, and writes no manifest', async () => {
    const before = JSON.parse((await cofferAsPostgres(['--repo', repo, 'list', '--json'], env)).stdout) as unknown[];
    // The archiver reports success but archives nowhere (an archive_command pointed elsewhere)…
    await b.query(`ALTER SYSTEM SET archive_command = '/bin/true'`);
    await b.query('SELECT pg_reload_conf()');
    // …and the coffer wal-archiver the old one started is gone (running, it would archive a few files more).
    await stopArchivers(b.data);
    try {
      const t0 = performance.now();
      const r = await backup(b, 'b', ['--archive-timeout', '3']);
      expect(r.status).toBe(EXIT_CODES.COFFER_ARCHIVE_CHECK_FAILED);
      expect(r.stderr).toMatch(/WAL [0-9A-F]{24} was not archived in this repository within 3 s/);
      expect(r.stderr).toContain('no manifest was written');
      expect(performance.now() - t0).toBeLessThan(60_000);
      const after = JSON.parse((await cofferAsPostgres(['--repo', repo, 'list', '--json'], env)).stdout) as unknown[];
      expect(after).toHaveLength(before.length);
      // Explicitly without the check: committed, and marked as needing WAL from elsewhere.
      const unchecked = await backup(b, 'b', ['--no-archive-check']);
      expect(unchecked.status).toBe(0);
      const listed = JSON.parse((await cofferAsPostgres(['--repo', repo, 'list', '--json'], env)).stdout) as { id: string; postgres?: { archiveChecked?: boolean } }[];
      expect(listed.find((x) => x.id === unchecked.info!.id)!.postgres!.archiveChecked).toBe(false);
    } finally {
      await b.query('ALTER SYSTEM RESET archive_command');
      await b.query('SELECT pg_reload_conf()');
    }
    // A server that does not archive at all is refused before anything is read.
    const quiet = await Cluster.create(install, work.dir, { passphrase });
    await quiet.start();
    try {
      const r = await backup(quiet, 'quiet');
      expect(r.status).toBe(EXIT_CODES.COFFER_ARCHIVE_CHECK_FAILED);
      expect(r.stderr).toContain('archive_mode is off');
    } finally {
      await quiet.stop();
    }
  }, 180_000);
});

async function runAs(cmd: string[]): Promise<void> {
  const r = await runAsPostgres(cmd[0]!, cmd.slice(1));
  if (r.status !== 0) throw new Error(`${cmd.join(' ')}: ${r.stderr}`);
}
