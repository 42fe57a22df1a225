/**
 * `coffer verify` proves a PostgreSQL backup recoverable on real clusters: a
 * pgbench-loaded cluster with writes after its backup is restored into a
 * sandbox, recovered to the end of the archive, started in a network of its
 * own, checked (amcheck, page checksums, smoke queries, the point reached),
 * every phase timed — while the source keeps writing and archiving and a
 * subscription in the backup would, unisolated, reach its publisher. Then the
 * drills: a segment taken from the middle of the WAL chain, a flipped byte in
 * a pack, and a heap block damaged where its page checksum cannot see.
 */
import { cp, mkdir, open, readdir, readFile, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EXIT_CODES } from '@coffer/cli';
import { pageChecksum, parseLsn, segmentName } from '@coffer/engine';
import type { RecoveryDrillReport, VerifyRunReport } from '@coffer/verify';
import { coffer, startCoffer } from '../support/cli.js';
import { archivingCluster, Cluster, cofferAsPostgres, debianInstall, pgInstalls, runAsPostgres } from '../support/pg.js';

const env = { COFFER_PASSPHRASE: 'verify passphrase' };
const PGBENCH = '/usr/lib/postgresql/15/bin/pgbench';

async function backup(repo: string, c: Cluster): Promise<string> {
  const r = await cofferAsPostgres(['--repo', repo, 'backup', '--json'], { ...env, ...c.pgEnv });
  if (r.status !== 0) throw new Error(`backup failed: ${r.stderr}`);
  return (JSON.parse(r.stdout) as { id: string }).id;
}

async function verify(repo: string, args: string[]): Promise<{ status: number | null; report: VerifyRunReport; stderr: string }> {
  const r = await coffer(['--repo', repo, 'verify', '--json', ...args], env);
  let report: VerifyRunReport;
  try {
    report = JSON.parse(r.stdout) as VerifyRunReport;
  } catch {
    throw new Error(`verify printed no report (exit ${r.status}): ${r.stderr}\n${r.stdout}`);
  }
  return { status: r.status, report, stderr: r.stderr };
}

describe('verify a pgbench cluster on PostgreSQL 15 while it keeps writing', () => {
  const install = debianInstall();
  let work: { dir: string; cleanup: () => Promise<void> };
  let src: Cluster;
  let publisher: Cluster;
  let repo: string;
  let first: string;
  let second: string;
  let rowsBefore = 0;

  beforeAll(async () => {
    ({ work, repo, cluster: src } = await archivingCluster('coffer-verify-', install, env.COFFER_PASSPHRASE));
    // Segments switched early are zero-filled new files, not recycled ones still holding old WAL: a segment archived
    // after a few rows is a few rows' worth, as a day's WAL is that day's changes.
    await src.query('ALTER SYSTEM SET wal_recycle = off');
    await src.query('SELECT pg_reload_conf()');
    // A publisher the source subscribes to: a restored subscription must never reach it.
    publisher = await Cluster.create(install, work.dir, { conf: { wal_level: 'logical' } });
    await publisher.start();
    await publisher.query('CREATE TABLE feed (id int PRIMARY KEY)');
    await publisher.query('CREATE PUBLICATION pub FOR TABLE feed');
    await src.query('CREATE TABLE feed (id int PRIMARY KEY)');
    await src.query(`CREATE SUBSCRIPTION sub CONNECTION 'host=127.0.0.1 port=${publisher.port} user=postgres dbname=postgres' PUBLICATION pub`);
    const bench = await runAsPostgres(PGBENCH, ['-i', '-s', '2', '-q'], src.pgEnv);
    if (bench.status !== 0) throw new Error(`pgbench -i: ${bench.stderr}`);
    await src.query('CREATE TABLE t (id int PRIMARY KEY, at timestamptz DEFAULT clock_timestamp())');
    first = await backup(repo, src);
    // Between the two backups, writes spread over several segments (the gap drill takes one of them away).
    const run = await runAsPostgres(PGBENCH, ['-t', '300', '-c', '2', '-n'], src.pgEnv);
    if (run.status !== 0) throw new Error(`pgbench: ${run.stderr}`);
    for (let i = 1; i <= 20; i++) {
      await src.query('INSERT INTO t(id) VALUES ($1)', [i]);
      if (i % 5 === 0) await src.query('SELECT pg_switch_wal()');
    }
    second = await backup(repo, src);
    // Writes after the newest backup: recovery must replay them from the archive.
    for (let i = 21; i <= 50; i++) await src.query('INSERT INTO t(id) VALUES ($1)', [i]);
    rowsBefore = 50;
    await src.archiveNow();
  }, 300_000);

  afterAll(async () => {
    await src?.stop();
    await publisher?.stop();
    await work?.cleanup();
  });

  it('passes with every phase timed and amcheck, page checksums and smoke queries reported; the source, its archive and its publisher are untouched', async () => {
    const walBefore = await walObjects(repo);
    const [senderBefore] = await publisher.query<{ pid: number }>(`SELECT pid FROM pg_stat_replication`);
    // The source keeps writing and archiving while the sandbox recovers; the publisher's walsenders are watched throughout.
    let writing = true;
    let next = rowsBefore + 1;
    const senders = new Set<number>();
    const writer = (async () => {
      while (writing) {
        await src.query('INSERT INTO t(id) VALUES ($1)', [next++]);
        if (next % 40 === 0) await src.query('SELECT pg_switch_wal()');
        for (const r of await publisher.query<{ pid: number }>(`SELECT pid FROM pg_stat_replication`)) senders.add(r.pid);
        await new Promise((r) => setTimeout(r, 20));
      }
    })();
    const reportFile = join(work.dir, 'verify.md');
    let result;
    try {
      // Logical replication workers allowed on purpose: only the network namespace keeps the restored subscription from its publisher.
      result = await verify(repo, ['--others', '0', '--report', reportFile, '--metrics-textfile', join(work.dir, 'coffer_verify.prom'), '--setting', 'max_logical_replication_workers=4', '--setting', 'max_sync_workers_per_subscription=2', '--keep-sandbox', '--smoke', 'SELECT count(*) = 200000 FROM pgbench_accounts', '--smoke', `SELECT count(*) >= ${rowsBefore} FROM t`, '--smoke', 'SELECT sum(abalance) = (SELECT sum(delta) FROM pgbench_history) FROM pgbench_accounts']);
    } finally {
      writing = false;
      await writer;
    }
    const { status, report, stderr } = result;
    expect(report.failures, stderr).toEqual([]);
    expect(status).toBe(0);
    expect(report.ok).toBe(true);
    expect(report.walChain.ok).toBe(true);
    // The first run reads every pack whole.
    expect(report.readData!.read).toBe(report.readData!.packs);
    expect(report.readData!.bytesRead).toBe(report.readData!.packBytes);
    expect(report.readData!.problems).toEqual([]);
    expect(report.backups).toHaveLength(1);
    const b = report.backups[0]!;
    expect(b.server).toContain('PostgreSQL 15');
    expect(b.phases.map((p) => p.name)).toEqual(['plan', 'restore', 'start', 'replay', 'checks', 'stop']);
    for (const p of b.phases) expect(p.seconds).toBeGreaterThan(0);
    expect(b.rtoSeconds).toBeCloseTo(b.phases.filter((p) => ['plan', 'restore', 'start', 'replay'].includes(p.name)).reduce((n, p) => n + p.seconds, 0), 5);
    expect(b.wal.files).toBeGreaterThan(1);
    expect(b.restored.bytes).toBeGreaterThan(20 * 1024 * 1024);
    const checks = Object.fromEntries(b.checks.map((c) => [c.name, c]));
    expect(Object.keys(checks).sort()).toEqual(['amcheck', 'page-checksums', 'recovered-point', 'recovery', 'smoke']);
    for (const c of b.checks) expect(c.ok).toBe(true);
    expect(checks.amcheck!.summary).toMatch(/^2 databases, \d+ tables, \d+ B-tree indexes/);
    expect(checks['page-checksums']!.summary).toMatch(/^pg_checksums: \d+ blocks, none bad/);
    expect(checks.smoke!.summary).toBe('3 of 3 queries passed');
    // Recovery went past the backup: the rows written after it came back.
    expect(Date.parse(b.recovered!.lastCommit!)).toBeGreaterThan(0);
    const metrics = await readFile(join(work.dir, 'coffer_verify.prom'), 'utf8');
    expect(metrics).toMatch(/^coffer_verify_ok\{command="verify",[^}]*\} 1$/m);
    expect(Number(/^coffer_verify_rto_seconds\{[^}]*\} (\S+)$/m.exec(metrics)?.[1])).toBeCloseTo(b.rtoSeconds, 5);
    const md = await readFile(reportFile, 'utf8');
    expect(md).toContain('Measured RTO');
    expect(md).toContain('| amcheck | pass |');
    // The kept sandbox's server is stopped; its subscription tried its publisher and found no route there.
    await expect(stat(join(b.sandbox, 'data', 'postmaster.pid'))).rejects.toThrow(/ENOENT/);
    const log = await readFile(join(b.sandbox, 'data.log'), 'utf8');
    expect(log).toMatch(/could not connect to the publisher: .*(Connection refused|Network is unreachable)/);
    await rm(b.sandbox, { recursive: true });
    // Nothing of the sandbox archived (no new timeline), the source archives on, the publisher saw only the source.
    const walAfter = await walObjects(repo);
    expect(walAfter.filter((k) => !walBefore.includes(k) && !/\/00000001[0-9A-F]{16}(\.[0-9A-F]{8}\.backup)?$/.test(k))).toEqual([]);
    const [archiver] = await src.query<{ failed: string }>(`SELECT failed_count::text AS failed FROM pg_stat_archiver`);
    expect(archiver!.failed).toBe('0');
    expect((await readdir(join(src.data, 'pg_wal'))).filter((n) => !/^00000001[0-9A-F]{16}(\.[0-9A-F]{8}\.backup)?$/.test(n) && n !== 'archive_status' && n !== '.coffer-ack')).toEqual([]);
    expect([...senders]).toEqual([senderBefore!.pid]);
    // The slot is held by the source's own subscription throughout (which may advance it): never by another.
    const [slot] = await publisher.query<{ pid: number | null }>(`SELECT active_pid AS pid FROM pg_replication_slots WHERE slot_name = 'sub'`);
    expect(slot!.pid).toBe(senderBefore!.pid);
    expect(await src.query(`SELECT 1 FROM pg_stat_replication`)).toEqual([]);
    expect(b.backup).toContain(second);
    expect(b.recorded).toMatch(/^verified\//);
  }, 600_000);

  it('the next night, after light changes, verifies the newest backup and the one verified least recently (never, here), reading far less than the repository', async () => {
    for (let i = 0; i < 100; i++) await src.query('INSERT INTO t(id) VALUES ($1)', [100_000 + i]);
    await src.archiveNow();
    const reportFile = join(work.dir, 'night-2.md');
    // No random sample here: in a repository of a few packs, one sampled base-backup pack is a third of it (the sample is the engine test's).
    const { status, report } = await verify(repo, ['--smoke', 'SELECT count(*) > 0 FROM t', '--report', reportFile, '--read-data-sample', '0']);
    expect(status).toBe(0);
    const d = report.readData!;
    expect(d.read).toBeGreaterThan(0);
    expect(d.read).toBe(d.due);
    expect(d.bytesRead).toBeLessThan(d.packBytes / 4);
    expect(await readFile(reportFile, 'utf8')).toContain(`Read ${d.read} of ${d.packs} packs whole`);
    expect(report.backups.map((b) => b.backup.slice(-64))).toEqual([second, first].map((id) => expect.stringContaining(id.slice(0, 12)) as unknown as string));
  }, 600_000);

  it('drill verify: the nightly drill reports the measured RTO and the archive\'s RPO against the targets (JSON, markdown, SVG, metrics); a missed target fails it, named', async () => {
    await src.query('INSERT INTO t(id) VALUES ($1)', [200_000]);
    await src.archiveNow();
    const reports = join(work.dir, 'drills');
    const metrics = join(work.dir, 'drill.prom');
    const args = ['--others', '0', '--no-record', '--read-data-sample', '0', '--reports', reports, '--smoke', 'SELECT count(*) > 0 FROM t'];
    const r = await coffer(['--repo', repo, '--metrics-textfile', metrics, 'drill', 'verify', '--json', ...args, '--project-bytes', '10GB', '--project-wal-bytes', '1GB'], env);
    const report = JSON.parse(r.stdout) as RecoveryDrillReport;
    expect(r.status, JSON.stringify(report.findings)).toBe(0);
    expect(report).toMatchObject({ kind: 'verify', ok: true, subject: 'stanza main', findings: [] });
    expect(report.rto!.met).toBe(true);
    expect(report.rto!.seconds).toBeGreaterThan(0);
    expect(report.rto!.marginSeconds).toBeCloseTo(1800 - report.rto!.seconds, 6);
    // The newest commit (just archived) is seconds old: well inside the 15 minutes.
    expect(report.rpo!.met).toBe(true);
    expect(report.rpo!.seconds).toBeLessThan(120);
    expect(report.rto!.projected).toMatchObject({ bytes: 10e9, walBytes: 1e9, met: true });
    expect(report.rto!.projected!.seconds).toBeGreaterThan(report.rto!.seconds);
    expect(report.phases.map((p) => p.name)).toEqual(expect.arrayContaining(['WAL chain', 'packs read whole', expect.stringMatching(/: replay$/)]));
    expect((await readdir(reports)).sort()).toEqual([`${report.id}.json`, `${report.id}.md`, `${report.id}.svg`]);
    expect(JSON.parse(await readFile(join(reports, `${report.id}.json`), 'utf8'))).toEqual(report);
    const md = await readFile(join(reports, `${report.id}.md`), 'utf8');
    expect(md).toContain('## Post-mortem');
    expect(md).toMatch(/\| RTO \(plan \+ restore \+ start \+ replay of .*\) \| [\d.]+ s \| 1800\.0 s \| met \|/);
    expect(await readFile(join(reports, `${report.id}.svg`), 'utf8')).toMatch(/^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg"/);
    const prom = await readFile(metrics, 'utf8');
    expect(prom).toMatch(/^coffer_drill_ok\{command="drill verify",[^}]*\} 1$/m);
    expect(prom).toMatch(/^coffer_drill_rto_seconds\{command="drill verify",[^}]*\} [\d.e+-]+$/m);

    // A target missed: the drill fails (the verification's exit status), the finding names it, the metric says so.
    const missed = await coffer(['--repo', repo, '--metrics-textfile', metrics, 'drill', 'verify', '--json', ...args, '--rto-target', '0.01'], env);
    expect(missed.status).toBe(EXIT_CODES.COFFER_VERIFY_FAILED);
    const m = JSON.parse(missed.stdout) as RecoveryDrillReport;
    expect(m.ok).toBe(false);
    expect(m.findings).toEqual([expect.stringMatching(/^RTO: recovering \S+ took [\d.]+ s, over the 0\.01 s target$/)]);
    expect(m.postMortem.improve[0]).toBe(`Fix: ${m.findings[0]}`);
    expect(missed.stderr).toContain(m.findings[0]);
    expect(await readFile(metrics, 'utf8')).toMatch(/^coffer_drill_ok\{command="drill verify",[^}]*\} 0$/m);
  }, 600_000);

  it('with a target time, recovery stops there: the older backup is chosen, the rows committed up to the target come back and no later one', async () => {
    const [{ at }] = (await src.query<{ at: string }>(`SELECT to_char(pg_xact_commit_timestamp(xmin) AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00' AS at FROM t WHERE id = 10`)) as [{ at: string }];
    const { status, report } = await verify(repo, ['--target-time', at, '--no-record', '--no-read-data', '--smoke', 'SELECT count(*) = 10 FROM t', '--smoke', 'SELECT max(id) = 10 FROM t']);
    expect(report.failures).toEqual([]);
    expect(status).toBe(0);
    const b = report.backups[0]!;
    expect(b.backup).toContain(first);
    expect(b.target).toBe(`time ${at}`);
    expect(b.checks.find((c) => c.name === 'smoke')!.summary).toBe('2 of 2 queries passed');
    expect(Date.parse(b.recovered!.lastCommit!)).toBeLessThanOrEqual(Date.parse(at.replace(' ', 'T').replace('+00', 'Z')));
    expect(report.readData).toBeUndefined();
  }, 600_000);

  it('a machine that cannot make the sandbox is told so before anything runs (exit 31): no namespace tools, server binaries of another version', async () => {
    // A parent of its own: other test files make and remove sandboxes under the shared temporary directory meanwhile.
    const parent = join(work.dir, 'refused-sandboxes');
    await mkdir(parent);
    const sandboxes = async () => readdir(parent);
    const noTools = await coffer(['--repo', repo, 'verify', '--no-record', '--sandbox', parent], { ...env, PATH: '/nonexistent' });
    expect(noTools.status).toBe(EXIT_CODES.COFFER_SANDBOX_UNAVAILABLE);
    expect(noTools.stderr).toContain('verification sandbox: unshare:');
    const other = pgInstalls().find((i) => i.major !== 15)!;
    const wrong = await coffer(['--repo', repo, 'verify', '--no-record', '--sandbox', parent, '--pg-bin', other.bin], env);
    expect(wrong.status).toBe(EXIT_CODES.COFFER_SANDBOX_UNAVAILABLE);
    expect(wrong.stderr).toContain(`is of PostgreSQL 15, but the server binaries given are of ${other.major}`);
    expect(await sandboxes()).toEqual([]);
  });

  it('stopped by SIGTERM while the sandbox server runs, verify stops the sandbox server and removes the sandbox (exit 143)', async () => {
    const parent = join(work.dir, 'sandboxes');
    await mkdir(parent);
    const run = startCoffer(['--repo', repo, 'verify', '--others', '0', '--no-record', '--sandbox', parent], env);
    let seen = '';
    await new Promise<void>((resolve, reject) => {
      run.child.stderr!.on('data', (d: Buffer) => {
        seen += d.toString();
        if (/verify: (replay|checks)/.test(seen)) resolve();
      });
      run.done.then(() => reject(new Error(`verify ended before it started the sandbox: ${seen}`)), reject);
    });
    const [sandbox] = await readdir(parent);
    expect(sandbox).toMatch(/^coffer-verify-/);
    run.child.kill('SIGTERM');
    const r = await run.done;
    expect(r.status).toBe(143);
    expect(r.stderr).toContain('verify stopped by SIGTERM; sandbox removed');
    expect(await readdir(parent)).toEqual([]);
    // No server of that sandbox is left running.
    const ps = await runAsPostgres('ps', ['-eo', 'args']);
    expect(ps.stdout).not.toContain(sandbox);
  }, 600_000);

  it('drill: a WAL segment removed from the middle of the chain is named, with the backups it cuts short; recovery from before it fails', async () => {
    const copy = join(work.dir, 'repo-gap');
    await cp(repo, copy, { recursive: true });
    const listed = JSON.parse((await coffer(['--repo', copy, 'list', '--json'], env)).stdout) as { id: string; label: string; postgres: { startLsn: string; stopLsn: string } }[];
    const a = listed.find((b) => b.id.startsWith(first.slice(0, 12)))!;
    const z = listed.find((b) => b.id.startsWith(second.slice(0, 12)))!;
    const seg = (lsn: string, end = false) => (parseLsn(lsn) - (end ? 1n : 0n)) / 16777216n;
    const victim = seg(a.postgres.stopLsn, true) + 2n;
    expect(victim).toBeLessThan(seg(z.postgres.startLsn));
    const name = segmentName(1, victim, 16777216);
    const key = (await walObjects(copy)).find((k) => k.endsWith(`/${name}`))!;
    await rm(join(copy, key));

    const chain = await verify(copy, ['--wal']);
    expect(chain.status).toBe(EXIT_CODES.COFFER_VERIFY_FAILED);
    expect(chain.report.walChain.gaps).toEqual([{ timeline: 1, from: name, to: name, segments: 1, breaks: [], limits: [expect.stringContaining(first.slice(0, 12))] }]);
    expect(chain.report.failures[0]).toBe(`wal-chain: ${name}…${name} (1 segment) missing; recovery from ${a.label} ends before it`);
    expect(Object.fromEntries(chain.report.walChain.backups.map((b) => [b.label, b.state]))).toEqual({ [a.label]: 'limited', [z.label]: 'complete' });
    // The nightly drill fails on it too, the gap named among its findings.
    const drilled = await coffer(['--repo', copy, 'drill', 'verify', '--json', '--no-record', '--no-read-data', '--others', '0', '--reports', join(work.dir, 'gap-drills')], env);
    expect(drilled.status).toBe(EXIT_CODES.COFFER_VERIFY_FAILED);
    expect((JSON.parse(drilled.stdout) as RecoveryDrillReport).findings).toContain(chain.report.failures[0]);

    const older = await verify(copy, [first.slice(0, 12), '--no-record']);
    expect(older.status).toBe(EXIT_CODES.COFFER_VERIFY_FAILED);
    const point = older.report.backups[0]!.checks.find((c) => c.name === 'recovered-point')!;
    expect(point.ok).toBe(false);
    expect(point.failures[0]).toContain(`before the newest archived segment`);
    expect(point.failures[0]).toContain(`missing: ${name}…${name}`);
    await rm(copy, { recursive: true });
  }, 600_000);

  it('drill: a flipped byte in a pack fails the verification, naming the pack', async () => {
    const copy = join(work.dir, 'repo-flip');
    await cp(repo, copy, { recursive: true });
    const packs: { path: string; size: number }[] = [];
    for (const dir of await readdir(join(copy, 'data'))) {
      for (const f of await readdir(join(copy, 'data', dir))) packs.push({ path: join(copy, 'data', dir, f), size: (await stat(join(copy, 'data', dir, f))).size });
    }
    const largest = packs.sort((x, y) => y.size - x.size)[0]!;
    const fh = await open(largest.path, 'r+');
    const at = Math.floor(largest.size / 3);
    const one = Buffer.alloc(1);
    await fh.read(one, 0, 1, at);
    one[0] = one[0]! ^ 0x10;
    await fh.write(one, 0, 1, at);
    await fh.close();
    // Every pack due (--read-data-days 0): the read finds it; the sandbox restore of a backup using it fails on it too.
    const r = await verify(copy, ['--others', '1', '--no-record', '--read-data-days', '0']);
    expect(r.status).toBe(EXIT_CODES.COFFER_VERIFY_FAILED);
    const packName = largest.path.split('/').pop()!;
    expect(r.report.failures.filter((f) => f.startsWith('read-data: ') && f.includes(packName))).toHaveLength(1);
    expect(r.report.failures.some((f) => !f.startsWith('read-data: ') && f.includes(packName))).toBe(true);
    for (const b of r.report.backups) await expect(stat(b.sandbox)).rejects.toThrow(/ENOENT/);
    await rm(copy, { recursive: true });
  }, 600_000);
});

describe('verify on PostgreSQL 17, run as the postgres user', () => {
  const install = pgInstalls().find((i) => i.major === 17)!;
  let work: { dir: string; cleanup: () => Promise<void> };
  let c: Cluster;
  let repo: string;

  beforeAll(async () => {
    ({ work, repo, cluster: c } = await archivingCluster('coffer-verify17-', install, env.COFFER_PASSPHRASE));
  }, 120_000);
  afterAll(async () => {
    await c?.stop();
    await work?.cleanup();
  });

  it('drill: a heap block changed on disk with its checksum made to match passes page checksums and is caught by amcheck', async () => {
    await c.query('CREATE TABLE h (id int PRIMARY KEY, v text)');
    await c.query(`INSERT INTO h SELECT g, md5(g::text) FROM generate_series(1, 100) g`);
    await c.query('CHECKPOINT');
    const [{ path }] = (await c.query<{ path: string }>(`SELECT pg_relation_filepath('h') AS path`)) as [{ path: string }];
    await c.stop();
    // Block 0, item 1: its id changes from 1 to 1000001, and the page checksum is recomputed — only the index still says 1.
    const fh = await open(join(c.data, path), 'r+');
    const page = Buffer.alloc(8192);
    await fh.read(page, 0, 8192, 0);
    const item = page.readUInt32LE(24);
    const tuple = item & 0x7fff;
    const hoff = page.readUInt8(tuple + 22);
    expect(page.readInt32LE(tuple + hoff)).toBe(1);
    page.writeInt32LE(1000001, tuple + hoff);
    page.writeUInt16LE(pageChecksum(page, 0, 0), 8);
    await fh.write(page, 0, 8192, 0);
    await fh.close();
    await c.start();
    // The backup reads every page checksum: this page passes.
    await backup(repo, c);
    const r = await cofferAsPostgres(['--repo', repo, 'verify', '--json'], env);
    expect(r.status, r.stderr).toBe(EXIT_CODES.COFFER_VERIFY_FAILED);
    const report = JSON.parse(r.stdout) as VerifyRunReport;
    const checks = Object.fromEntries(report.backups[0]!.checks.map((k) => [k.name, k]));
    expect(checks['page-checksums']!.ok).toBe(true);
    expect(checks['page-checksums']!.summary).toContain("Coffer's reader");
    expect(checks.amcheck!.ok).toBe(false);
    expect(checks.amcheck!.failures.join('\n')).toMatch(/postgres: index public\.h_pkey: .*lacks matching index tuple/);
    expect(report.backups[0]!.server).toContain('PostgreSQL 17');
  }, 600_000);
});

async function walObjects(repo: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (dir: string, rel: string) => {
    for (const e of await readdir(dir, { withFileTypes: true })) {
      if (e.isDirectory()) await walk(join(dir, e.name), `${rel}${e.name}/`);
      else out.push(`${rel}${e.name}`);
    }
  };
  await walk(join(repo, 'wal'), 'wal/');
  return out.sort();
}

