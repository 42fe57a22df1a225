/**
 * S3 over TLS: radosgw serves the test run over HTTPS as well, with a
 * certificate for 127.0.0.1 from a CA of its own. With that CA trusted
 * (NODE_EXTRA_CA_CERTS), a repository there initialises, backs up, restores
 * and checks. Without it, or under a name the certificate does not carry,
 * every request is refused: the command fails with the store's typed error
 * (exit 14) naming the certificate problem, and writes nothing.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EXIT_CODES } from '@coffer/cli';
import { coffer } from '../support/cli.js';
import { newBucket, s3Env, s3Server, s3Store } from '../support/s3.js';
import { collectList } from '@coffer/engine';
import { pseudoRandom, scratch, snapshot } from '../support/tree.js';

let work: { dir: string; cleanup: () => Promise<void> };
beforeAll(async () => {
  work = await scratch('coffer-s3-tls-');
});
afterAll(async () => work?.cleanup());

describe('S3 over TLS', () => {
  it('with the CA trusted, a repository over HTTPS backs up, restores and checks', async () => {
    const s = s3Server();
    const bucket = await newBucket();
    const env = { ...s3Env(s.tlsEndpoint), NODE_EXTRA_CA_CERTS: s.caFile, COFFER_PASSPHRASE: 'tls passphrase' };
    const repo = `s3://${bucket}/tls`;
    const src = join(work.dir, 'src');
    await mkdir(src);
    for (let i = 0; i < 5; i++) await writeFile(join(src, `f${i}`), pseudoRandom(200_000, i));
    for (const args of [['init'], ['backup', '--path', src], ['check', '--read-data']]) {
      const r = await coffer(['--repo', repo, ...args], env);
      expect(r.status, `${args[0]}: ${r.stderr}`).toBe(0);
    }
    const to = join(work.dir, 'restored');
    expect((await coffer(['--repo', repo, 'restore', 'latest', '--to', to], env)).status).toBe(0);
    expect(await snapshot(to)).toEqual(await snapshot(src));
  }, 120_000);

  it('without the CA, or under a name the certificate does not carry, requests are refused (exit 14, the certificate named) and nothing is written', async () => {
    const s = s3Server();
    const bucket = await newBucket();
    const repo = `s3://${bucket}/untrusted`;
    const untrusted = await coffer(['--repo', repo, 'init'], { ...s3Env(s.tlsEndpoint), COFFER_PASSPHRASE: 'x'.repeat(12) });
    expect(untrusted.status).toBe(EXIT_CODES.COFFER_STORE_UNAVAILABLE);
    expect(untrusted.stderr).toMatch(/certificate/i);
    // The certificate names 127.0.0.1; localhost reaches the same server under another name.
    const otherName = await coffer(['--repo', repo, 'init'], { ...s3Env(s.tlsEndpoint.replace('127.0.0.1', 'localhost')), NODE_EXTRA_CA_CERTS: s.caFile, COFFER_PASSPHRASE: 'x'.repeat(12) });
    expect(otherName.status).toBe(EXIT_CODES.COFFER_STORE_UNAVAILABLE);
    expect(otherName.stderr).toMatch(/altnames|does not match|certificate/i);
    expect(await collectList(s3Store(bucket), '')).toEqual([]);
  }, 120_000);
});
