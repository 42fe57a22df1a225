/**
 * The notes that let `wal-push` confirm a file archived ahead without opening
 * the repository: a note confirms exactly the file it was written for — same
 * bytes, same cluster, same command line and environment, young enough — once;
 * anything else falls through to the full program.
 */
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readdir, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ACK_TTL_MS, confirmFromAck, pruneWalAcks, walPushCall, writeWalAck } from '../src/wal-ack.js';

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
  await mkdir(join(pgdata, 'pg_wal'));
});
afterEach(async () => rm(pgdata, { recursive: true, force: true }));

const argv = (repo = 's3://b/p') => ['--repo', repo, 'wal-push', `pg_wal/${NAME}`];
const env = { COFFER_STANZA: 'main' };

describe('wal-push notes', () => {
  it('reads only the plain command line, and none that must leave a record', () => {
    expect(walPushCall(argv(), env, pgdata)).toMatchObject({ path: join(pgdata, 'pg_wal', NAME) });
    expect(walPushCall(['wal-push', '--ahead', '8', `pg_wal/${NAME}`], {}, pgdata)).toBeDefined();
    expect(walPushCall(['wal-push', `pg_wal/${NAME}`, '--verbose'], {}, pgdata)).toBeUndefined();
    expect(walPushCall(['wal-push', `pg_wal/${NAME}.partial`], {}, pgdata)).toBeUndefined();
    expect(walPushCall(['wal-push', 'pg_wal/00000002.history'], {}, pgdata)).toBeUndefined();
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
    expect(await readdir(join(pgdata, 'pg_wal', '.coffer-ack'))).toEqual([]);
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
    expect(await readdir(join(pgdata, 'pg_wal', '.coffer-ack'))).toEqual([]);
  });
});
