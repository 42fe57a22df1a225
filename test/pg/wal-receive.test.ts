/**
 * `coffer wal-receive` against a real PostgreSQL 15 server: WAL streamed over
 * a physical replication slot lands in the repository segment by segment,
 * byte for byte what the server wrote to pg_wal; the slot is told only what
 * the repository holds; a receiver killed at random moments resumes from the
 * archive's end with no segment missing; SIGTERM ends it cleanly with an
 * audit record.
 */
import { createHash } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { coffer, startCoffer } from '../support/cli.js';
import { Cluster, debianInstall, pgScratch, runAsPostgres } from '../support/pg.js';
import { until } from '../support/until.js';

const env = { COFFER_PASSPHRASE: 'wal-receive passphrase' };
let work: { dir: string; cleanup: () => Promise<void> };
let cluster: Awaited<ReturnType<typeof Cluster.create>>;
let repo: string;
let db: string;
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

beforeAll(async () => {
  work = await pgScratch('coffer-wal-receive-');
  repo = join(work.dir, 'repo');
  expect((await coffer(['--repo', repo, 'init'], env)).status).toBe(0);
  // WAL kept in pg_wal long enough to compare what was archived with what the server wrote.
  cluster = await Cluster.create(debianInstall(), work.dir, { conf: { wal_keep_size: '512MB' } });
  await cluster.start();
  await cluster.query('CREATE TABLE t (id serial PRIMARY KEY, pad text)');
  db = `host=127.0.0.1 port=${cluster.port} user=postgres dbname=postgres`;
}, 120_000);
afterAll(async () => {
  await cluster?.stop().catch(() => undefined);
  await work?.cleanup();
});

/** Writes a little and switches segments: returns the name of the segment the switch completed. */
async function fillSegment(): Promise<string> {
  await cluster.query("INSERT INTO t (pad) SELECT repeat('x', 200) FROM generate_series(1, 2000)");
  const [row] = await cluster.query<{ wal: string }>('SELECT pg_walfile_name(pg_switch_wal()) AS wal');
  return row!.wal;
}

/** The LSN just past segment `name` (16 MiB segments). */
function endOf(name: string): string {
  const next = (BigInt(parseInt(name.slice(8, 16), 16)) * 256n + BigInt(parseInt(name.slice(16, 24), 16)) + 1n) * 16_777_216n;
  return `${(next >> 32n).toString(16).toUpperCase()}/${(next & 0xffffffffn).toString(16).toUpperCase()}`;
}

/** The archived copy of `name`, as wal-fetch returns it. */
async function fetched(name: string, stanza = 'main'): Promise<Buffer> {
  const to = join(work.dir, `fetched-${stanza}-${name}`);
  const r = await coffer(['--repo', repo, '--stanza', stanza, 'wal-fetch', name, to, '--prefetch', '0'], env, { cwd: cluster.data });
  expect(r.status, r.stderr).toBe(0);
  return readFile(to);
}

function receiver() {
  let out = '';
  const run = startCoffer(['--repo', repo, '--stanza', 'main', 'wal-receive', '--db', db, '--status-interval', '1'], env);
  run.child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  return { ...run, output: () => out, archived: () => [...out.matchAll(/^archived ([0-9A-F]{24});/gm)].map((m) => m[1]!) };
}

describe('wal-receive', () => {
  it('streams each segment into the repository byte for byte, and the slot holds only what the repository lacks', async () => {
    const r = receiver();
    try {
      await until(() => /streaming timeline 1/.test(r.output()), 'the receiver to start streaming', 30_000, 50);
      const switched: string[] = [];
      for (let i = 0; i < 3; i++) switched.push(await fillSegment());
      await until(() => switched.every((s) => r.archived().includes(s)), 'the switched segments to be archived', 60_000, 100);
      for (const name of switched) expect(sha(await fetched(name))).toBe(sha(await readFile(join(cluster.data, 'pg_wal', name))));
      // The server was told what is durable: the slot's restart point is past the last archived segment's start.
      const last = switched.at(-1)!;
      await until(
        async () => (await cluster.query<{ ok: boolean }>(`SELECT restart_lsn >= '${endOf(last)}'::pg_lsn AS ok FROM pg_replication_slots WHERE slot_name = 'coffer'`))[0]?.ok === true,
        'the slot to move past what the repository holds',
        30_000,
        200,
      );
      // A commit between segment boundaries: durable as the open segment's streamed prefix within the flush
      // interval, reported flushed, and served by wal-fetch zero-padded (the segment itself is not complete).
      await cluster.query("INSERT INTO t (pad) VALUES ('between boundaries')");
      const [{ lsn, name }] = (await cluster.query<{ lsn: string; name: string }>('SELECT pg_current_wal_lsn()::text AS lsn, pg_walfile_name(pg_current_wal_lsn()) AS name')) as [{ lsn: string; name: string }];
      const committedAt = performance.now();
      await until(
        async () => (await cluster.query<{ ok: boolean }>(`SELECT flush_lsn >= '${lsn}'::pg_lsn AS ok FROM pg_stat_replication WHERE application_name = 'coffer'`))[0]?.ok === true,
        'the commit to be reported flushed',
        10_000,
        50,
      );
      expect(performance.now() - committedAt).toBeLessThan(3000);
      const offset = Number(BigInt(`0x${lsn.split('/')[1]}`) % 16_777_216n);
      const served = await fetched(name);
      expect(served.length).toBe(16_777_216);
      const written = await readFile(join(cluster.data, 'pg_wal', name));
      expect(served.subarray(0, offset).equals(written.subarray(0, offset))).toBe(true);
      expect(served.subarray(offset + 8192).every((b) => b === 0)).toBe(true);
    } finally {
      r.child.kill('SIGTERM');
    }
    const done = await r.done;
    expect(done.status, done.stderr).toBe(0);
    const trail = JSON.parse((await coffer(['--repo', repo, 'audit', '--json'], env)).stdout) as { records: { command: string; details: Record<string, unknown> }[] };
    expect(trail.records.some((x) => x.command === 'wal-receive' && (x.details.segments as number) >= 3)).toBe(true);
  }, 180_000);
  it('follows a promotion: streaming from a standby, the stream goes on on the new timeline with its history and no gap', async () => {
    const standbyDir = join(work.dir, 'standby');
    const bb = await runAsPostgres(join(debianInstall().bin, 'pg_basebackup'), ['-D', standbyDir, '-R', '-X', 'stream', '-c', 'fast', '-h', '127.0.0.1', '-p', String(cluster.port), '-U', 'postgres']);
    expect(bb.status, bb.stderr).toBe(0);
    const standby = await Cluster.adopt(debianInstall(), standbyDir);
    await standby.start({ archive_mode: 'off', hot_standby: 'on', wal_keep_size: '512MB' });
    try {
      // The slot on the standby too, so that the stream survives the promotion with nothing recycled.
      await standby.query("SELECT pg_create_physical_replication_slot('coffer', true)");
      const onStandby = `host=127.0.0.1 port=${standby.port} user=postgres dbname=postgres`;
      let out = '';
      const run = startCoffer(['--repo', repo, '--stanza', 'main', 'wal-receive', '--db', onStandby, '--status-interval', '1', '--flush-interval', '0.2'], env);
      run.child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
      try {
        await until(() => /streaming timeline 1/.test(out), 'the receiver to stream from the standby', 30_000, 50);
        await cluster.query("INSERT INTO t (pad) VALUES ('before the promotion')");
        const [{ before }] = (await cluster.query<{ before: string }>('SELECT pg_current_wal_lsn()::text AS before')) as [{ before: string }];
        await until(async () => (await standby.query<{ ok: boolean }>(`SELECT pg_last_wal_replay_lsn() >= '${before}'::pg_lsn AS ok`))[0]?.ok === true, 'the standby to replay it', 30_000, 50);
        await standby.query('SELECT pg_promote()');
        await until(() => /streaming timeline 2/.test(out), 'the receiver to follow timeline 2', 60_000, 100);
        await standby.query("INSERT INTO t (pad) VALUES ('after the promotion')");
        const [{ lsn, name }] = (await standby.query<{ lsn: string; name: string }>('SELECT pg_current_wal_lsn()::text AS lsn, pg_walfile_name(pg_current_wal_lsn()) AS name')) as [{ lsn: string; name: string }];
        expect(name.startsWith('00000002')).toBe(true);
        await until(
          async () => (await standby.query<{ ok: boolean }>(`SELECT flush_lsn >= '${lsn}'::pg_lsn AS ok FROM pg_stat_replication WHERE application_name = 'coffer'`))[0]?.ok === true,
          'the new timeline to be flushed into the repository',
          30_000,
          50,
        );
        // The history file, and the new timeline's WAL from the switch segment's start, byte for byte.
        expect(sha(await fetched('00000002.history'))).toBe(sha(await readFile(join(standbyDir, 'pg_wal', '00000002.history'))));
        const offset = Number(BigInt(`0x${lsn.split('/')[1]}`) % 16_777_216n);
        const served = await fetched(name);
        const written = await readFile(join(standbyDir, 'pg_wal', name));
        expect(served.subarray(0, offset).equals(written.subarray(0, offset))).toBe(true);
      } finally {
        run.child.kill('SIGTERM');
      }
      const done = await run.done;
      expect(done.status, done.stderr).toBe(0);
      // Timeline 2 was streamed from the start of the segment it branched in: nothing of it skipped.
      const history = (await readFile(join(standbyDir, 'pg_wal', '00000002.history'), 'utf8')).trim().split('\n').at(-1)!;
      const switched = BigInt(`0x${history.split(/\s+/)[1]!.split('/')[1]}`);
      const high = history.split(/\s+/)[1]!.split('/')[0]!;
      const segStart = `${high}/${(switched - (switched % 16_777_216n)).toString(16).toUpperCase()}`;
      expect(out).toMatch(new RegExp(`streaming timeline 2 of system \\d+ from ${segStart.replace('/', '\\/')} `));
    } finally {
      await standby.stop();
    }
  }, 180_000);
});

describe('wal-receive and key rotation', () => {
  it('opens the repository again after key rotate, and goes on streaming with nothing missing', async () => {
    let out = '';
    // A stanza of its own: in 'main', timeline 2 branched off this cluster's timeline 1 above (the standby that
    // promoted), so its timeline 1 past that point is an old primary's, which wal-push and wal-receive refuse.
    const run = startCoffer(['--repo', repo, '--stanza', 'rotating', 'wal-receive', '--db', db, '--slot', 'rotating', '--status-interval', '1', '--key-check', '0.5'], env);
    run.child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    try {
      await until(() => /streaming timeline 1/.test(out), 'the receiver to start streaming', 30_000, 50);
      const before = await fillSegment();
      await until(() => out.includes(`archived ${before};`), `${before} archived`, 60_000, 50);
      const rotated = await coffer(['--repo', repo, 'key', 'rotate'], env);
      expect(rotated.status, rotated.stderr).toBe(0);
      await until(() => /newer data key \(key rotate\): opening it again/.test(out), 'the receiver to open the repository again', 30_000, 50);
      const after = await fillSegment();
      await until(() => out.includes(`archived ${after};`), `${after} archived after the rotation`, 60_000, 50);
      for (const name of [before, after]) expect(sha(await fetched(name, 'rotating'))).toBe(sha(await readFile(join(cluster.data, 'pg_wal', name))));
      // A WAL record is its magic (4 bytes), its SHA-256 (32), then the sealed bytes, whose second and third name the
      // data key (docs/FORMAT.md): the record after the rotation is under the new one.
      const keyOf = async (name: string) => {
        const [sysid] = await readdir(join(repo, 'wal', 'rotating'));
        return (await readFile(join(repo, 'wal', 'rotating', sysid!, '00000001', name))).readUInt16BE(4 + 32 + 1);
      };
      expect(await keyOf(after)).toBe((await keyOf(before)) + 1);
    } finally {
      run.child.kill('SIGTERM');
    }
    expect((await run.done).status).toBe(0);
    await cluster.query("SELECT pg_drop_replication_slot('rotating')");
  }, 180_000);
});
