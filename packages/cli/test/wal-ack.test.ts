/**
 * The notes that let `wal-push` confirm a file archived ahead without opening
 * the repository: a note confirms exactly the file it was written for — same
 * bytes, same cluster, same command line and environment, young enough — once;
 * anything else falls through to the full program.
 */
import { spawnSync, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, constants, openSync, readSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { standInArchiver } from './stand-in-archiver.js';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { ACK_TTL_MS, archiverFile, confirmFromAck, pruneWalAcks, walPushCall, writeWalAck, writeWalError, type WalAckFile } from '../src/wal-ack.js';

let pgdata: string;
const NAME = '000000010000000000000003';
const SYSID = 7_300_000_000_000_000_123n;

async function segment(fill: number): Promise<{ path: string; sha256: string }> {
  const bytes = Buffer.alloc(64 * 1024, fill);
  bytes.writeBigUInt64LE(SYSID, 24);
  const path = join(pgdata, 'pg_wal', NAME);
  await writeFile(path, bytes);
  return { path, sha256: createHash('sha256').update(bytes).digest('hex') };
}

beforeEach(async () => {
  pgdata = await mkdtemp(join(tmpdir(), 'coffer-wal-ack-'));
  await mkdir(join(pgdata, 'pg_wal', 'archive_status'), { recursive: true });
});

/** The notes left (not the archiver's own files: its heartbeat, the last call). */
async function notes(): Promise<string[]> {
  return (await readdir(join(pgdata, 'pg_wal', '.coffer-ack'))).filter((n) => !n.startsWith('archiver-'));
}

/** The file as the archiver records it. */
async function identityOf(path: string): Promise<WalAckFile> {
  const s = await stat(path, { bigint: true });
  return { dev: s.dev.toString(), ino: s.ino.toString(), size: Number(s.size), mtimeNs: s.mtimeNs.toString(), ctimeNs: s.ctimeNs.toString() };
}
const standIns: ChildProcess[] = [];
afterEach(async () => {
  for (const c of standIns.splice(0)) c.kill('SIGKILL');
  await rm(pgdata, { recursive: true, force: true });
});

const argv = (repo = 's3://b/p') => ['--repo', repo, 'wal-push', `pg_wal/${NAME}`];
const env = { COFFER_STANZA: 'main' };
/** The same call with no archiver to start (a test must not start one: there is no coffer here to run). */
const noStart = (repo = 's3://b/p') => ['--repo', repo, 'wal-push', '--archiver-idle', '0', `pg_wal/${NAME}`];

describe('wal-push notes', () => {
  it('wakes each call that waits on a pipe of its own when a note or an error note is written, and removes a pipe nobody reads', async () => {
    const acks = join(pgdata, 'pg_wal', '.coffer-ack');
    await mkdir(acks, { recursive: true });
    for (const n of ['wait-1', 'wait-2']) expect(spawnSync('mkfifo', [join(acks, n)]).status).toBe(0);
    // wait-2's call reads (as the script does, the pipe opened without blocking); wait-1's call is gone.
    const reader = openSync(join(acks, 'wait-2'), constants.O_RDONLY | constants.O_NONBLOCK);
    try {
      const { path, sha256 } = await segment(1);
      await writeWalAck(path, { identity: 'x', name: NAME, sha256, systemIdentifier: SYSID.toString() });
      await writeWalError(join(pgdata, 'pg_wal', '000000010000000000000004'), 'store unavailable');
      const got = Buffer.alloc(16);
      expect(got.subarray(0, readSync(reader, got)).toString()).toBe('n\nn\n');
      expect((await readdir(acks)).filter((n) => n.startsWith('wait-'))).toEqual(['wait-2']);
    } finally {
      closeSync(reader);
    }
  });

  it('reads only the plain command line, and none that must leave a record', () => {
    expect(walPushCall(argv(), env, pgdata)).toMatchObject({ path: join(pgdata, 'pg_wal', NAME) });
    expect(walPushCall(['wal-push', '--ahead', '8', `pg_wal/${NAME}`], {}, pgdata)).toBeDefined();
    expect(walPushCall(['wal-push', `pg_wal/${NAME}`, '--verbose'], {}, pgdata)).toBeUndefined();
    // Every file archive_command is called for: a call for a history or backup-label file that fell through to
    // the full program would archive ahead beside the archiver, the same files twice.
    expect(walPushCall(['wal-push', `pg_wal/${NAME}.partial`], {}, pgdata)).toBeDefined();
    expect(walPushCall(['wal-push', 'pg_wal/00000002.history'], {}, pgdata)).toBeDefined();
    expect(walPushCall(['wal-push', `pg_wal/${NAME}.00000028.backup`], {}, pgdata)).toBeDefined();
    expect(walPushCall(['wal-push', 'pg_wal/RECOVERYXLOG'], {}, pgdata)).toBeUndefined();
    expect(walPushCall(['wal-push', `pg_wal/${NAME}.tmp`], {}, pgdata)).toBeUndefined();
    expect(walPushCall(['list'], {}, pgdata)).toBeUndefined();
    expect(walPushCall(['--metrics-textfile', '/m.prom', 'wal-push', `pg_wal/${NAME}`], {}, pgdata)).toBeUndefined();
    expect(walPushCall(argv(), { COFFER_RUN_RECORD: '/r.json' }, pgdata)).toBeUndefined();
    // What chooses the repository or stanza is in the identity; the --ahead count is not.
    const id = (a: string[], e: NodeJS.ProcessEnv = env) => walPushCall(a, e, pgdata)!.identity;
    expect(id(argv())).toBe(id(['--repo', 's3://b/p', 'wal-push', '--ahead=2', `pg_wal/${NAME}`]));
    expect(id(argv())).not.toBe(id(argv('s3://b/q')));
    expect(id(argv())).not.toBe(id(argv(), { COFFER_STANZA: 'other' }));
    expect(id(argv())).not.toBe(id(argv(), { ...env, AWS_ENDPOINT_URL_S3: 'http://elsewhere:9000' }));
  });

  it('confirms the file it was written for, once', async () => {
    const { path, sha256 } = await segment(1);
    const { identity } = walPushCall(argv(), env, pgdata)!;
    await writeWalAck(path, { identity, name: NAME, sha256, systemIdentifier: SYSID.toString() });
    expect(await confirmFromAck(argv(), env, pgdata)).toBe(true);
    expect(await confirmFromAck(argv(), env, pgdata)).toBe(false);
    expect(await notes()).toEqual([]);
  });

  it('confirms a note the archiver wrote while the call was starting (judged when read, not when the call began)', async () => {
    const { path, sha256 } = await segment(1);
    const { identity } = walPushCall(argv(), env, pgdata)!;
    await writeWalAck(path, { identity, name: NAME, sha256, systemIdentifier: SYSID.toString() });
    // The call begins at t; the archiver's note says t + 1 (written while the call noted itself); every later
    // look at the clock says t + 5. Judged at t, the note looked like one from the future and the call fell
    // through to the full program, which stored the file a second time (seen once in CI).
    const t = Date.now();
    const notePath = join(pgdata, 'pg_wal', '.coffer-ack', NAME);
    await writeFile(notePath, JSON.stringify({ ...JSON.parse(await readFile(notePath, 'utf8')), at: t + 1 }));
    const clock = vi.spyOn(Date, 'now').mockReturnValueOnce(t).mockReturnValue(t + 5);
    try {
      expect(await confirmFromAck(argv(), env, pgdata)).toBe(true);
    } finally {
      clock.mockRestore();
    }
  });

  it('confirms nothing else: other bytes, another cluster, repository or stanza, an old note', async () => {
    const { path, sha256 } = await segment(1);
    const { identity } = walPushCall(argv(), env, pgdata)!;
    const note = (over: Partial<{ identity: string; sha256: string; systemIdentifier: string }> = {}) => writeWalAck(path, { identity, name: NAME, sha256, systemIdentifier: SYSID.toString(), ...over });
    await note({ sha256: '0'.repeat(64) });
    expect(await confirmFromAck(argv(), env, pgdata)).toBe(false);
    await note({ systemIdentifier: '42' });
    expect(await confirmFromAck(argv(), env, pgdata)).toBe(false);
    await note();
    expect(await confirmFromAck(argv('s3://b/q'), env, pgdata)).toBe(false);
    expect(await confirmFromAck(argv(), { COFFER_STANZA: 'other' }, pgdata)).toBe(false);
    expect(await confirmFromAck(argv(), env, pgdata, Date.now() + ACK_TTL_MS + 1000)).toBe(false);
    // The file recycled under the same name: other bytes.
    await segment(2);
    expect(await confirmFromAck(argv(), env, pgdata)).toBe(false);
    // Old notes go when new ones are written.
    const old = new Date(Date.now() - ACK_TTL_MS - 60_000);
    await utimes(join(pgdata, 'pg_wal', '.coffer-ack', NAME), old, old);
    await pruneWalAcks(path);
    expect(await notes()).toEqual([]);
  });

  it("confirms the archiver's note by the file's identity, without hashing; the file written again (even with the same bytes) or another cluster's is not confirmed", async () => {
    const { path, sha256 } = await segment(1);
    const { identity } = walPushCall(argv(), env, pgdata)!;
    expect(walPushCall(noStart(), env, pgdata)!.identity).toBe(identity);
    const note = async (over: Partial<{ systemIdentifier: string; file: WalAckFile }> = {}) =>
      writeWalAck(path, { identity, name: NAME, sha256: '0'.repeat(64), systemIdentifier: SYSID.toString(), file: await identityOf(path), ...over });
    // The identity stands for the bytes: even a wrong digest in the note is not looked at.
    await note();
    expect(await confirmFromAck(noStart(), env, pgdata)).toBe(true);
    await note({ systemIdentifier: '42' });
    expect(await confirmFromAck(noStart(), env, pgdata)).toBe(false);
    await note();
    await new Promise((r) => setTimeout(r, 5));
    await segment(1);
    expect(await confirmFromAck(noStart(), env, pgdata)).toBe(false);
    // Another file under the name (another inode), however alike.
    const other = await identityOf(path);
    await rm(path);
    await segment(1);
    await note({ file: other });
    expect(await confirmFromAck(noStart(), env, pgdata)).toBe(false);
    expect(sha256).toHaveLength(64);
  });

  it("confirms a history or backup-label file by its identity and the cluster's pg_control (they have no page header)", async () => {
    const history = join(pgdata, 'pg_wal', '00000002.history');
    await writeFile(history, '1\t0/3000000\tno recovery target specified\n');
    const control = Buffer.alloc(8192);
    control.writeBigUInt64LE(SYSID, 0);
    await mkdir(join(pgdata, 'global'));
    await writeFile(join(pgdata, 'global', 'pg_control'), control);
    const call = ['--repo', 's3://b/p', 'wal-push', '--archiver-idle', '0', 'pg_wal/00000002.history'];
    const { identity } = walPushCall(call, env, pgdata)!;
    const note = async (systemIdentifier: string) => writeWalAck(history, { identity, name: '00000002.history', sha256: '0'.repeat(64), systemIdentifier, file: await identityOf(history) });
    await note('42');
    expect(await confirmFromAck(call, env, pgdata)).toBe(false);
    await note(SYSID.toString());
    expect(await confirmFromAck(call, env, pgdata)).toBe(true);
    // Another cluster's pg_control beside it: not this note's file.
    control.writeBigUInt64LE(SYSID + 1n, 0);
    await writeFile(join(pgdata, 'global', 'pg_control'), control);
    await note(SYSID.toString());
    expect(await confirmFromAck(call, env, pgdata)).toBe(false);
  });

  it('waits for the note while the archiver runs; gives up at once when it failed on the file, is gone, or the file is not marked ready', async () => {
    const { path, sha256 } = await segment(1);
    const { identity } = walPushCall(argv(), env, pgdata)!;
    const beat = archiverFile(join(pgdata, 'pg_wal'), identity);
    await mkdir(dirname(beat), { recursive: true });
    // A process that is not an archiver under the pid (pid reuse) is not taken for one.
    await writeFile(beat, `${process.pid}\n`);
    await writeFile(join(pgdata, 'pg_wal', 'archive_status', `${NAME}.ready`), '');
    const t = Date.now();
    expect(await confirmFromAck(noStart(), env, pgdata)).toBe(false);
    expect(Date.now() - t).toBeLessThan(1000);
    await rm(join(pgdata, 'pg_wal', 'archive_status', `${NAME}.ready`));
    // A stand-in for the archiver: alive, named so, its heartbeat fresh.
    const standIn = await standInArchiver(standIns);
    await writeFile(beat, `${standIn.pid}\n`);
    const ack = async () => writeWalAck(path, { identity, name: NAME, sha256, systemIdentifier: SYSID.toString(), file: await identityOf(path) });
    // Not marked ready: PostgreSQL is not waiting for it, nor is the archiver working on it.
    expect(await confirmFromAck(noStart(), env, pgdata)).toBe(false);
    await writeFile(join(pgdata, 'pg_wal', 'archive_status', `${NAME}.ready`), '');
    const t0 = Date.now();
    setTimeout(() => void ack(), 300);
    expect(await confirmFromAck(noStart(), env, pgdata)).toBe(true);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(290);
    // The archiver failed on the file: the full program archives it (and says why, if it fails too).
    await writeWalError(path, 'store unavailable');
    const t1 = Date.now();
    expect(await confirmFromAck(noStart(), env, pgdata)).toBe(false);
    expect(Date.now() - t1).toBeLessThan(5000);
    // The archiver killed: gone at once, its heartbeat still fresh.
    await ack();
    await rm(join(pgdata, 'pg_wal', '.coffer-ack', NAME));
    standIn.kill('SIGKILL');
    await new Promise((r) => standIn.once('exit', r));
    const t2 = Date.now();
    expect(await confirmFromAck(noStart(), env, pgdata)).toBe(false);
    expect(Date.now() - t2).toBeLessThan(1000);
    // Hung: there, but its heartbeat stale.
    const hung = await standInArchiver(standIns);
    await writeFile(beat, `${hung.pid}\n`);
    const old = new Date(Date.now() - 60_000);
    await utimes(beat, old, old);
    const t3 = Date.now();
    expect(await confirmFromAck(noStart(), env, pgdata)).toBe(false);
    expect(Date.now() - t3).toBeLessThan(1000);
  });
});
