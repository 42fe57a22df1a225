/**
 * A synchronous `wal-receive` and a standby that never streams: commits are
 * acknowledged once the receiver made them durable in the repository, and
 * the standby recovers only through restore_command (`wal-fetch`, which
 * serves the receiver's streamed prefix of a segment not yet whole). When
 * the primary's postmaster is killed, the standby's guard reads where the
 * repository's WAL ends (`coffer wal-end`), waits until its standby replayed
 * that far, then promotes: no acknowledged commit is lost, though none of
 * them ever reached the standby over replication.
 */
import { appendFile, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { postmasterPid } from '@coffer/engine';
import { ADDRESSES, Topology, topologyScope } from '../support/failover-topology.js';
import { startCoffer } from '../support/cli.js';
import { postgresUser } from '../support/pg.js';
import { until } from '../support/until.js';

const scope = topologyScope();

describe('failover with WAL only in the repository', () => {
  it('the standby replays what the synchronous receiver acknowledged before it is promoted: 0 commits lost', async () => {
    const t = (scope.t = await Topology.build('coffer-replayrepo-', { replayFrom: true }));
    // The standby may not stream from the primary (replication as postgres is refused): WAL reaches it only
    // through the repository. The receiver connects as a role of its own.
    const hba = join(t.primary.data, 'pg_hba.conf');
    await writeFile(hba, `host replication postgres all reject\n${await readFile(hba, 'utf8')}`);
    await t.sql('db1', 'CREATE ROLE rx LOGIN SUPERUSER REPLICATION');
    await t.sql('db1', 'SELECT pg_reload_conf()');
    await t.sql('db1', "SELECT pg_terminate_backend(pid) FROM pg_stat_replication WHERE application_name = 'db2'");
    let out = '';
    const receiver = startCoffer(['--repo', t.repo, 'wal-receive', '--db', `host=${ADDRESSES.db1} port=${t.port} user=rx dbname=postgres`, '--synchronous', '--status-interval', '1'], { COFFER_PASSPHRASE: 'failover passphrase' }, { as: postgresUser() });
    receiver.child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    receiver.child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
    scope.cleanups.push(async () => {
      receiver.child.kill('SIGKILL');
      await receiver.done.catch(() => undefined);
    });
    await until(() => /streaming timeline 1/.test(out), 'the receiver to stream', 30_000, 50);
    await appendFile(join(t.primary.data, 'postgresql.auto.conf'), "synchronous_standby_names = 'coffer'\n");
    await t.sql('db1', 'SELECT pg_reload_conf()');
    await until(async () => (await t.sql<{ s: string }>('db1', "SELECT sync_state AS s FROM pg_stat_replication WHERE application_name = 'coffer'"))[0]?.s === 'sync', 'the receiver to be the synchronous standby', 30_000, 100);
    expect(await t.sql('db1', "SELECT 1 FROM pg_stat_replication WHERE application_name = 'db2'")).toEqual([]);

    await t.startAll();
    const w = t.writer('clients', 'name');
    await until(() => w.acked.length > 200, 'commits through the name', 30_000, 50);
    await new Promise((r) => setTimeout(r, 2000));
    process.kill(postmasterPid(t.primary.data)!, 'SIGKILL');
    await until(() => w.last()?.address === ADDRESSES.db2, 'a write accepted by the new primary', 120_000, 50).catch((e: Error) => {
      throw new Error(`${e.message}\n${t.logs.join('\n')}\n${out}`);
    });
    await w.stop();
    // Nothing acknowledged is lost, though the standby never streamed a byte from the primary.
    const present = new Set((await t.sql<{ id: string }>('db2', 'SELECT id::text FROM commits')).map((r) => Number(r.id)));
    const lost = w.acked.filter((a) => !present.has(a.id));
    const guard = t.logs.find((l) => l.startsWith('--- guard --node db2\n'))!;
    expect(lost.length, `${lost.length} of ${w.acked.length} acknowledged commits lost\n${guard}\n${(await t.standby.log()).slice(-4000)}`).toBe(0);
    expect(guard).toMatch(/"kind":"replayed".*replayed the repository's WAL to/);
    expect(guard).not.toMatch(/bytes short/);
    console.log(`repository replay: ${w.acked.length} commits acknowledged, none lost; ${guard.match(/replayed the repository's WAL[^"]*/)![0]}`);
  }, 300_000);
});
