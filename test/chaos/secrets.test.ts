/**
 * Secrets stay where they were put. A passphrase, a key file's content and
 * the S3 secret key, each distinctive, are given to `coffer` the ways an
 * operator gives them (environment, a key file) while it initialises, backs
 * up, restores, archives and fetches WAL, checks, expires, collects, mirrors,
 * adds and rotates keys, reports, and fails (a wrong passphrase, a bad option,
 * a missing repository). None of them may appear — as text, base64 or hex —
 * in anything it prints, in any byte it stores (local and S3), in anything it
 * restores, or in the command line of a process it starts.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { ListObjectsV2Command, GetObjectCommand } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { coffer, startCoffer, type RunResult } from '../support/cli.js';
import { newBucket, s3Client, s3Env, s3Server } from '../support/s3.js';
import { pseudoRandom, scratch } from '../support/tree.js';
import { fakeCluster, segment } from '../support/wal.js';
import { until } from '../support/until.js';
import { addFigures } from './figures.js';

const run = promisify(execFile);
const SYS = 7_600_000_000_000_000_004n;
let work: { dir: string; cleanup: () => Promise<void> };

beforeAll(async () => {
  work = await scratch('coffer-chaos-secrets-');
});
afterAll(async () => work.cleanup());

/** Every form a secret could leak in. */
function forms(secret: string): string[] {
  const b = Buffer.from(secret);
  return [secret, b.toString('base64'), b.toString('base64url'), b.toString('hex')].filter((f) => f.length >= 12);
}

async function filesUnder(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true })) if (e.isFile()) out.push(join(e.parentPath, e.name));
  return out;
}

describe('secrets', () => {
  it('never appear in output, stored bytes, restored files or the command lines of processes Coffer starts', async () => {
    const passphrase = `pass-${randomBytes(12).toString('hex')}-phrase`;
    const keyFileContent = randomBytes(32).toString('base64');
    const keyFile = join(work.dir, 'key-file');
    await writeFile(keyFile, keyFileContent, { mode: 0o600 });
    const addedKey = join(work.dir, 'added-key');
    const addedKeyContent = randomBytes(32).toString('base64');
    await writeFile(addedKey, addedKeyContent, { mode: 0o600 });
    const awsSecret = s3Server().secretAccessKey;
    // The keys of a re-encrypted copy, given only as COFFER_TO_PASSPHRASE.
    const toPassphrase = `to-${randomBytes(12).toString('hex')}-phrase`;
    const secrets = [passphrase, keyFileContent, addedKeyContent, awsSecret, toPassphrase];
    const outputs: RunResult[] = [];
    const c = async (args: string[], env: Record<string, string | undefined>) => {
      const r = await coffer(args, env);
      outputs.push(r);
      return r;
    };

    // A local repository under a passphrase; an S3 one under a key file.
    const local = join(work.dir, 'repo');
    const bucket = await newBucket();
    const s3 = `s3://${bucket}/secrets`;
    const localEnv = { COFFER_PASSPHRASE: passphrase };
    const s3EnvK = { ...s3Env(), COFFER_KEY_FILE: keyFile };
    const src = join(work.dir, 'src');
    await mkdir(src);
    await writeFile(join(src, 'a.bin'), pseudoRandom(200_000, 1));
    const pgdata = await fakeCluster(join(work.dir, 'pgdata'), SYS);
    await writeFile(join(pgdata, 'pg_wal', '000000010000000000000001'), segment(SYS, 1, 1 << 20));
    for (const [repo, env] of [
      [local, localEnv],
      [s3, s3EnvK],
    ] as const) {
      expect((await c(['--repo', repo, 'init'], env)).status).toBe(0);
      expect((await c(['--repo', repo, 'backup', '--path', src, '--json'], env)).status).toBe(0);
      expect((await c(['--repo', repo, 'wal-push', join(pgdata, 'pg_wal', '000000010000000000000001')], { ...env, PGDATA: pgdata })).status).toBe(0);
      expect((await c(['--repo', repo, 'wal-fetch', '--system-id', SYS.toString(), '000000010000000000000001', join(work.dir, `fetched-${outputs.length}`)], env)).status).toBe(0);
      expect((await c(['--repo', repo, 'restore', 'latest', '--to', join(work.dir, `restored-${outputs.length}`)], env)).status).toBe(0);
      for (const args of [['list', '--json'], ['info', '--json'], ['check', '--read-data', '--json'], ['expire', '--keep-min', '1', '--json'], ['gc', '--json'], ['key', 'list', '--json']]) {
        expect((await c(['--repo', repo, ...args], env)).status, args.join(' ')).toBe(0);
      }
      // Rotation needs every key that wraps the current data key: before the second key is added.
      const rotated = await c(['--repo', repo, 'key', 'rotate'], env);
      expect(rotated.status, rotated.stderr).toBe(0);
      const added = await c(['--repo', repo, 'key', 'add', '--new-key-file', addedKey], env);
      expect(added.status, added.stderr).toBe(0);
      expect((await c(['--repo', repo, 'mirror', '--to', join(work.dir, `mirror-${outputs.length}`)], env)).status).toBe(0);
      const reencrypted = await c(['--repo', repo, 'mirror', '--reencrypt', '--to', join(work.dir, `reencrypted-${outputs.length}`)], { ...env, COFFER_TO_PASSPHRASE: toPassphrase });
      expect(reencrypted.status, reencrypted.stderr).toBe(0);
      // Failures: a wrong passphrase, a bad option value, a missing repository.
      expect((await c(['--repo', repo, 'list'], { ...env, COFFER_PASSPHRASE: `${passphrase}x`, COFFER_KEY_FILE: undefined })).status).not.toBe(0);
      expect((await c(['--repo', repo, 'gc', '--memory', 'lots'], env)).status).not.toBe(0);
      expect((await c(['--repo', `${repo}-none`, 'list'], env)).status).not.toBe(0);
      // The first key taken off (COFFER_OLD_PASSPHRASE for the passphrase), opened with the one added.
      const removed = await c(
        ['--repo', repo, 'key', 'remove', ...(repo === local ? ['--old-passphrase'] : ['--old-key-file', keyFile])],
        { ...env, COFFER_PASSPHRASE: undefined, COFFER_KEY_FILE: addedKey, ...(repo === local ? { COFFER_OLD_PASSPHRASE: passphrase } : {}) },
      );
      expect(removed.status, removed.stderr).toBe(0);
    }

    // The processes Coffer starts (its tuned re-run of check) show no secret in their command line.
    const child = startCoffer(['--repo', local, 'check', '--read-data'], localEnv);
    const cmdlines: string[] = [];
    await until(
      async () => {
        const { stdout } = await run('ps', ['-eo', 'args']);
        cmdlines.push(stdout);
        return stdout.split('\n').filter((l) => l.includes('coffer.js') && l.includes('check')).length >= 2;
      },
      'the tuned re-run of check',
      20_000,
      20,
    ).catch(() => undefined);
    outputs.push(await child.done);

    // A planted leak (the passphrase in base64) that the scan must find: it proves the scan looks.
    const canary = join(work.dir, 'canary');
    await writeFile(canary, `leaked: ${Buffer.from(passphrase).toString('base64')}\n`);
    // Scan: what was printed, what is stored (local, mirrors, S3), what was restored, and command lines.
    const haystacks: { where: string; bytes: Buffer }[] = [];
    for (const [i, o] of outputs.entries()) haystacks.push({ where: `output ${i}`, bytes: Buffer.from(o.stdout + o.stderr) });
    for (const f of await filesUnder(work.dir)) {
      if (f === keyFile || f === addedKey) continue;
      haystacks.push({ where: f, bytes: await readFile(f) });
    }
    const client = s3Client();
    try {
      const listed = await client.send(new ListObjectsV2Command({ Bucket: bucket }));
      for (const o of listed.Contents ?? []) {
        const body = await client.send(new GetObjectCommand({ Bucket: bucket, Key: o.Key! }));
        haystacks.push({ where: `s3://${bucket}/${o.Key}`, bytes: Buffer.from(await body.Body!.transformToByteArray()) });
      }
    } finally {
      client.destroy();
    }
    for (const [i, line] of cmdlines.entries()) haystacks.push({ where: `ps ${i}`, bytes: Buffer.from(line) });

    const found: string[] = [];
    for (const { where, bytes } of haystacks) for (const s of secrets) for (const f of forms(s)) if (bytes.includes(f)) found.push(`${where} holds a secret (${f === s ? 'as is' : 'encoded'})`);
    expect(found).toContain(`${canary} holds a secret (encoded)`);
    const leaks = found.filter((f) => !f.startsWith(`${canary} `));
    expect(leaks).toEqual([]);
    await addFigures('secrets', { secrets: leaks.length, trials: outputs.length });
  }, 600_000);
});
