/**
 * Repositories written before format 2 open as they are: a fixture written by
 * Coffer at 982a9a2 (see test/fixtures/README.md) is listed, restored, its
 * format 1 WAL served (checked against the system identifier in the
 * segment's own header), checked, and written to by this Coffer.
 */
import { cp, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { coffer } from './support/cli.js';
import { scratch } from './support/tree.js';

const FIXTURE = fileURLToPath(new URL('./fixtures/format1-repo', import.meta.url));
const KEY = fileURLToPath(new URL('./fixtures/format1-repo.key', import.meta.url));
const SYSID = '7500000000000000001';
let work: { dir: string; cleanup: () => Promise<void> };
let repo: string;
const env = { COFFER_KEY_FILE: KEY };

beforeAll(async () => {
  work = await scratch('coffer-format1-');
  repo = join(work.dir, 'repo');
  await cp(FIXTURE, repo, { recursive: true });
});
afterAll(async () => work.cleanup());

describe('a format 1 repository', () => {
  it('lists and restores its backup (by tag) and passes check --read-data', async () => {
    const list = await coffer(['--repo', repo, 'list', '--json'], env);
    expect(list.stderr).toBe('');
    expect(list.status).toBe(0);
    expect((JSON.parse(list.stdout) as { tags: string[]; kind: string }[]).map((b) => [b.kind, b.tags])).toEqual([['files', ['fixture']]]);
    const to = join(work.dir, 'restored');
    expect((await coffer(['--repo', repo, 'restore', 'fixture', '--to', to], env)).status).toBe(0);
    expect(await readFile(join(to, 'hello.txt'), 'utf8')).toBe('written by Coffer format 1\n');
    expect(await readFile(join(to, 'sub', 'n.txt'), 'utf8')).toBe('nested\n');
    const check = await coffer(['--repo', repo, 'check', '--read-data', '--json'], env);
    expect(check.status).toBe(0);
    expect((JSON.parse(check.stdout) as { walFiles: number }).walFiles).toBe(1);
  });

  it('serves its format 1 WAL for the system in the segment header, and refuses it for another system', async () => {
    const pgdata = join(work.dir, 'pgdata');
    await mkdir(join(pgdata, 'pg_wal'), { recursive: true });
    await writeFile(join(pgdata, 'recovery.signal'), '');
    const ok = await coffer(['--repo', repo, 'wal-fetch', '--prefetch', '0', '--system-id', SYSID, '000000010000000000000001', 'pg_wal/RECOVERYXLOG'], env, { cwd: pgdata });
    expect(ok.stderr).toBe('');
    expect(ok.status).toBe(0);
    expect((await readFile(join(pgdata, 'pg_wal', 'RECOVERYXLOG'))).readBigUInt64LE(24).toString()).toBe(SYSID);
    const other = await coffer(['--repo', repo, 'wal-fetch', '--prefetch', '0', '--system-id', '42', '000000010000000000000001', 'pg_wal/RECOVERYXLOG'], env, { cwd: pgdata });
    expect(other.status).toBe(255);
    expect(other.stderr).toContain(`WAL of system ${SYSID}, not 42`);
  });

  it('takes new (format 2) backups beside its old ones', async () => {
    const src = join(work.dir, 'new-src');
    await mkdir(src);
    await writeFile(join(src, 'new.txt'), 'format 2 object in a format 1 repository');
    expect((await coffer(['--repo', repo, 'backup', '--path', src], env)).status).toBe(0);
    const list = JSON.parse((await coffer(['--repo', repo, 'list', '--json'], env)).stdout) as unknown[];
    expect(list).toHaveLength(2);
    expect((await coffer(['--repo', repo, 'check', '--read-data'], env)).status).toBe(0);
  });
});
