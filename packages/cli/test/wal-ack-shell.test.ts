/**
 * `bin/coffer`, the shell script that confirms archive_command's calls from
 * the archiver's notes without starting Node. It may only ever say "archived"
 * (exit 0) where dist/wal-ack.js would: everything else runs the program —
 * here a stand-in Node (COFFER_NODE=/bin/false) that exits 1, so exit 0 is
 * the script's own confirmation and nothing else.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir, mkdtemp, readdir, readFile, realpath, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import { standInArchiver } from './stand-in-archiver.js';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { archiverFile, commandIdentity, writeWalAck, writeWalError, type WalAckFile } from '../src/wal-ack.js';

const SCRIPT = fileURLToPath(new URL('../bin/coffer', import.meta.url));
const NAME = '000000010000000000000007';
const SYSID = 7_300_000_000_000_000_777n;
/** What chooses the repository besides the options (wal-ack.ts's list). */
const ENV_KEYS = ['COFFER_REPO', 'COFFER_STANZA', 'COFFER_REPOSITORY_ID', 'AWS_ENDPOINT_URL', 'AWS_ENDPOINT_URL_S3', 'AWS_REGION', 'AWS_DEFAULT_REGION'] as const;

let pgdata: string;
let path: string;
const standIns: ChildProcess[] = [];

beforeEach(async () => {
  pgdata = await realpath(await mkdtemp(join(tmpdir(), 'coffer-wal-sh-')));
  await mkdir(join(pgdata, 'pg_wal', 'archive_status'), { recursive: true });
  await mkdir(join(pgdata, 'pg_wal', '.coffer-ack'), { mode: 0o700 });
  path = join(pgdata, 'pg_wal', NAME);
  const bytes = Buffer.alloc(64 * 1024, 3);
  bytes.writeBigUInt64LE(SYSID, 24);
  await writeFile(path, bytes);
});
afterEach(async () => {
  for (const c of standIns.splice(0)) c.kill('SIGKILL');
  await rm(pgdata, { recursive: true, force: true });
});

/** Runs the script; its exit status and output, and how long its output stayed open after it exited (`heldMs`). */
function script(args: string[], env: Record<string, string> = {}, node = '/bin/false'): Promise<{ status: number | null; stdout: string; ms: number; heldMs: number }> {
  const t = Date.now();
  return new Promise((resolve, reject) => {
    const child = spawn(SCRIPT, args, { cwd: pgdata, env: { PATH: process.env.PATH!, COFFER_NODE: node, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let exited = 0;
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => process.stderr.write(d));
    child.on('error', reject);
    child.on('exit', () => (exited = Date.now()));
    child.on('close', (status) => resolve({ status, stdout, ms: Date.now() - t, heldMs: Date.now() - exited }));
  });
}

async function fileOf(p: string): Promise<WalAckFile> {
  const s = await stat(p, { bigint: true });
  return { dev: s.dev.toString(), ino: s.ino.toString(), size: Number(s.size), mtimeNs: s.mtimeNs.toString(), ctimeNs: s.ctimeNs.toString() };
}

/** The archiver's note for NAME, as it writes it, for this command identity. */
async function note(identity: string, over: Partial<{ systemIdentifier: string; file: WalAckFile | undefined }> = {}): Promise<void> {
  const file = 'file' in over ? over.file : await fileOf(path);
  await writeWalAck(path, { identity, name: NAME, sha256: '0'.repeat(64), systemIdentifier: over.systemIdentifier ?? SYSID.toString(), ...(file ? { file } : {}) });
}
const noteThere = () => stat(join(pgdata, 'pg_wal', '.coffer-ack', NAME)).then(() => true, () => false);

const GLOBALS = ['--repo', 's3://bucket/prefix', '--stanza', 'main'];
const call = (after: string[] = [`pg_wal/${NAME}`]) => [...GLOBALS, 'wal-push', ...after];
const idOf = (globals: string[] = GLOBALS, env: Record<string, string> = {}, cwd = pgdata) => commandIdentity(globals, env, cwd);

describe('bin/coffer confirms archive_command calls without Node', () => {
  it('makes the command identity wal-ack.ts makes, for any options and environment: confirms then, and never for another', async () => {
    const text = fc.string({ unit: 'binary', maxLength: 24 }).filter((s) => !s.includes('\0'));
    const option = text.filter((s) => s !== 'wal-push' && !s.startsWith('--metrics-textfile'));
    const env = fc.dictionary(fc.constantFrom(...ENV_KEYS), text, { maxKeys: 4 });
    await fc.assert(
      fc.asyncProperty(fc.array(option, { maxLength: 5 }), env, fc.nat(), async (globals, e, pick) => {
        // Another command line: one option changed, or one variable set, cleared or changed.
        const otherGlobals = globals.length > 0 && pick % 2 === 0 ? globals.map((g, i) => (i === pick % globals.length ? `${g}x` : g)) : globals;
        const key = ENV_KEYS[pick % ENV_KEYS.length]!;
        const otherEnv: Record<string, string> = { ...e };
        if (otherGlobals === globals) {
          if (key in otherEnv) delete otherEnv[key];
          else otherEnv[key] = '';
        }
        await note(idOf(otherGlobals, otherEnv));
        const other = await script([...globals, 'wal-push', `pg_wal/${NAME}`], e);
        expect(other.status).toBe(1);
        expect(await noteThere()).toBe(true);
        await note(idOf(globals, e));
        const same = await script([...globals, 'wal-push', `pg_wal/${NAME}`], e);
        expect(same.status).toBe(0);
        expect(await noteThere()).toBe(false);
      }),
      { numRuns: 40 },
    );
  }, 120_000);

  it('confirms the file the note was written for, once, and says where the calls stand', async () => {
    await note(idOf());
    expect((await script(call())).status).toBe(0);
    expect(await noteThere()).toBe(false);
    const calls = (await readdir(join(pgdata, 'pg_wal', '.coffer-ack'))).filter((n) => n.endsWith('.call'));
    expect(calls).toEqual([`archiver-${idOf().slice(0, 16)}.call`]);
    expect(await readFile(join(pgdata, 'pg_wal', '.coffer-ack', calls[0]!), 'utf8')).toBe(NAME);
    // Used up: the next call for it is the program's.
    expect((await script(call())).status).toBe(1);
    // An absolute path and the options wal-push takes are the same call.
    await note(idOf());
    expect((await script(call(['--ahead', '2', '--archiver-idle=60', path]))).status).toBe(0);
  });

  it('runs the program, with the arguments as given, for every other command and on any doubt', async () => {
    const r = await script(['--repo', '/r', 'list', '--json'], {}, '/bin/echo');
    expect(r.stdout).toBe(`${join(dirname(SCRIPT), 'coffer.js')} --repo /r list --json\n`);
    const pushed = await script(call(), {}, '/bin/echo');
    expect(pushed.stdout).toBe(`${join(dirname(SCRIPT), 'coffer.js')} ${call().join(' ')}\n`);
  });

  it('confirms nothing the program would not: each difference runs the program and leaves the note', async () => {
    const id = idOf();
    const ackPath = join(pgdata, 'pg_wal', '.coffer-ack', NAME);
    const edit = async (change: (n: Record<string, unknown>) => void) => {
      const n = JSON.parse(await readFile(ackPath, 'utf8')) as Record<string, unknown>;
      change(n);
      await writeFile(ackPath, JSON.stringify(n));
    };
    const cases: [string, () => Promise<void>, string[]?, Record<string, string>?][] = [
      ['another identity', () => note(idOf([...GLOBALS, '--quiet']))],
      ['another stanza in the environment', () => note(id), call(), { COFFER_STANZA: 'other' }],
      ['another name', async () => (await note(id), await edit((n) => (n.name = '000000010000000000000008')))],
      ['another cluster', () => note(id, { systemIdentifier: '42' })],
      ['no file identity (the program hashes the file)', () => note(id, { file: undefined })],
      ['another version', async () => (await note(id), await edit((n) => (n.v = 2)))],
      ['over an hour old', async () => (await note(id), await edit((n) => (n.at = Date.now() - 3_600_000 - 5_000)))],
      ['from the future', async () => (await note(id), await edit((n) => (n.at = Date.now() + 60_000)))],
      ['another size', async () => (await note(id), await edit((n) => ((n.file as WalAckFile).size = 1)))],
      ['another inode', async () => (await note(id), await edit((n) => ((n.file as WalAckFile).ino = '1')))],
      ['another device', async () => (await note(id), await edit((n) => ((n.file as WalAckFile).dev = '1')))],
      ['times touched since', async () => (await note(id), await utimes(path, new Date(), new Date(Date.now() - 1000)))],
      ['written again, same bytes', async () => (await note(id), await new Promise((r) => setTimeout(r, 5)), await writeFile(path, await readFile(path)))],
      ['a run record asked for', () => note(id), call(), { COFFER_RUN_RECORD: '/tmp/r.json' }],
      ['a metrics file asked for', () => note(id), call(), { COFFER_METRICS_TEXTFILE: '/tmp/m.prom' }],
      ['a metrics file option', () => note(idOf([...GLOBALS, '--metrics-textfile', '/tmp/m.prom'])), [...GLOBALS, '--metrics-textfile', '/tmp/m.prom', 'wal-push', `pg_wal/${NAME}`]],
      ['an option it does not know', () => note(id), call(['--verbose', `pg_wal/${NAME}`])],
      ['two files', () => note(id), call([`pg_wal/${NAME}`, `pg_wal/${NAME}`])],
      ['--ahead without a count', () => note(id), call([`pg_wal/${NAME}`, '--ahead'])],
      ['--ahead not a count', () => note(id), call(['--ahead=x', `pg_wal/${NAME}`])],
      ['a path with . in it', () => note(id), call([`./pg_wal/${NAME}`])],
      ['a path with .. in it', () => note(id), call([`pg_wal/../pg_wal/${NAME}`])],
    ];
    for (const [what, arrange, args, env] of cases) {
      await rm(ackPath, { force: true });
      await arrange();
      const r = await script(args ?? call(), env ?? {});
      expect(r.status, what).toBe(1);
      expect(await noteThere(), what).toBe(true);
    }
  });

  it('confirms history, backup-label and partial files by their cluster: pg_control beside pg_wal for the first two, the header for a partial', async () => {
    const control = join(pgdata, 'global', 'pg_control');
    await mkdir(dirname(control));
    const controlBytes = Buffer.alloc(8192, 5);
    controlBytes.writeBigUInt64LE(SYSID, 0);
    await writeFile(control, controlBytes);
    const partial = `${NAME.slice(0, 23)}8.partial`;
    await writeFile(join(pgdata, 'pg_wal', partial), await readFile(path));
    for (const name of ['00000002.history', `${NAME}.00000028.backup`, partial]) {
      const file = join(pgdata, 'pg_wal', name);
      if (!name.endsWith('.partial')) await writeFile(file, `text of ${name}\n`);
      const noteFor = async (systemIdentifier: bigint) => writeWalAck(file, { identity: idOf(), name, sha256: '0'.repeat(64), systemIdentifier: systemIdentifier.toString(), file: await fileOf(file) });
      await noteFor(SYSID);
      expect((await script(call([`pg_wal/${name}`]))).status, name).toBe(0);
      expect((await readdir(join(pgdata, 'pg_wal', '.coffer-ack'))).includes(name), name).toBe(false);
      // A note for another cluster than the one pg_control (or the header) names.
      await noteFor(SYSID + 1n);
      expect((await script(call([`pg_wal/${name}`]))).status, name).toBe(1);
      await rm(join(pgdata, 'pg_wal', '.coffer-ack', name));
    }
    // Without pg_control, nothing says whose a history file is: the program decides.
    await rm(control);
    const history = join(pgdata, 'pg_wal', '00000002.history');
    await writeWalAck(history, { identity: idOf(), name: '00000002.history', sha256: '0'.repeat(64), systemIdentifier: SYSID.toString(), file: await fileOf(history) });
    expect((await script(call(['pg_wal/00000002.history']))).status).toBe(1);
  });

  it('keeps the command line\'s digest for the next calls: the same digest from the cache, never another\'s', async () => {
    const cache = join(pgdata, 'pg_wal', '.coffer-ack', 'identity-cache');
    await note(idOf());
    expect((await script(call())).status).toBe(0);
    const cached = await readFile(cache, 'utf8');
    expect(cached.split('\n')[0]).toBe(idOf());
    // Confirmed again from the cache.
    await note(idOf());
    expect((await script(call())).status).toBe(0);
    // A cache that holds this call's fields under another digest is believed (it is the archiver's own
    // directory): so the digest it holds must be the one the fields make, which the call writes itself.
    await writeFile(cache, cached.replace(idOf(), idOf([...GLOBALS, '--quiet'])));
    await note(idOf());
    expect((await script(call())).status).toBe(1);
    // Another command line does not take the cached digest: it makes its own, and caches that.
    const other = [...GLOBALS, '--quiet'];
    await note(idOf(other));
    expect((await script([...other, 'wal-push', `pg_wal/${NAME}`])).status).toBe(0);
    expect((await readFile(cache, 'utf8')).split('\n')[0]).toBe(idOf(other));
    // A field with a newline in it is not cached, and is still confirmed by its digest.
    const odd = ['--repo', 's3://bucket/a\nb'];
    await note(idOf(odd));
    expect((await script([...odd, 'wal-push', `pg_wal/${NAME}`])).status).toBe(0);
    expect((await readFile(cache, 'utf8')).split('\n')[0]).toBe(idOf(other));
  });

  it('waits for the note while the archiver works on the file; runs the program at once when there is no archiver, it failed on the file, or dies', async () => {
    const id = idOf();
    // Not marked ready, or no archiver: the program's to decide (it starts one).
    expect((await script(call())).status).toBe(1);
    await writeFile(join(pgdata, 'pg_wal', 'archive_status', `${NAME}.ready`), '');
    const none = await script(call());
    expect(none.status).toBe(1);
    expect(none.ms).toBeLessThan(2000);
    // A process under the heartbeat's pid that is not an archiver is not one.
    const beat = archiverFile(join(pgdata, 'pg_wal'), id);
    await writeFile(beat, `${process.pid}\n`);
    expect((await script(call())).status).toBe(1);

    let standIn = await standInArchiver(standIns);
    await writeFile(beat, `${standIn.pid}\n`);
    const waiting = script(call());
    await new Promise((r) => setTimeout(r, 400));
    const written = Date.now();
    await note(id);
    const r = await waiting;
    expect(r.status).toBe(0);
    expect(r.ms).toBeGreaterThanOrEqual(400);
    // Nothing it started (the ticker's last sleep, up to 250 ms) keeps its output open after it: a caller reading
    // it would wait.
    for (let i = 0; i < 10; i++) {
      const again = script(call());
      await new Promise((r) => setTimeout(r, 60));
      await note(id);
      const confirmed = await again;
      expect(confirmed.status).toBe(0);
      expect(confirmed.heldMs).toBeLessThan(150);
    }
    expect(Date.now() - written).toBeLessThan(2000);
    // It waited on a pipe of its own, gone with the call.
    expect((await readdir(join(pgdata, 'pg_wal', '.coffer-ack'))).filter((n) => n.startsWith('wait-'))).toEqual([]);

    // The archiver says it failed on the file: the program archives it.
    const failing = script(call());
    await new Promise((r) => setTimeout(r, 300));
    await writeWalError(path, 'store unavailable');
    expect((await failing).status).toBe(1);
    await rm(join(pgdata, 'pg_wal', '.coffer-ack', `${NAME}.error`));

    // The archiver dies while the call waits.
    const orphan = script(call());
    await new Promise((r) => setTimeout(r, 300));
    standIn.kill('SIGKILL');
    const t = Date.now();
    expect((await orphan).status).toBe(1);
    expect(Date.now() - t).toBeLessThan(3000);

    // A heartbeat gone stale (the archiver hung): not waited for.
    standIn = await standInArchiver(standIns);
    await writeFile(beat, `${standIn.pid}\n`);
    const old = new Date(Date.now() - 60_000);
    await utimes(beat, old, old);
    const stale = await script(call());
    expect(stale.status).toBe(1);
    expect(stale.ms).toBeLessThan(2000);
  }, 30_000);
});

