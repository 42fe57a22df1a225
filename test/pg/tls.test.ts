/**
 * PostgreSQL over TLS, as libpq means each `sslmode`: a server that accepts
 * only TLS, with a certificate from a test CA. `verify-full` with that CA
 * backs up; the same with another CA, or a host name the certificate does not
 * name, is refused before anything is read (exit 18, the certificate named as
 * the reason); `verify-ca` checks the chain only; the libpq environment
 * variables work as the keywords do; and a plain connection is turned away by
 * the server. A missing certificate file is a typed error naming it.
 */
import { execFileSync } from 'node:child_process';
import { chown, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EXIT_CODES } from '@coffer/cli';
import { archivingCluster, cofferAsPostgres, debianInstall, postgresUser, type Cluster } from '../support/pg.js';

const env = { COFFER_PASSPHRASE: 'tls passphrase' };
let work: { dir: string; cleanup: () => Promise<void> };
let repo: string;
let c: Cluster;

const openssl = (args: string[], cwd: string) => execFileSync('openssl', args, { cwd, stdio: 'pipe' });

/** A self-signed CA. */
function makeCa(dir: string, name: string): void {
  openssl(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.crt`, '-days', '2', '-subj', `/CN=${name}`], dir);
}

beforeAll(async () => {
  ({ work, repo, cluster: c } = await archivingCluster('coffer-tls-', debianInstall(), env.COFFER_PASSPHRASE));
  makeCa(work.dir, 'test-ca');
  makeCa(work.dir, 'other-ca');
  // The server's certificate names localhost only: 127.0.0.1 reaches the same server under a name it does not carry.
  await writeFile(join(work.dir, 'san.cnf'), 'subjectAltName = DNS:localhost\n');
  openssl(['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=localhost'], work.dir);
  openssl(['x509', '-req', '-in', 'server.csr', '-CA', 'test-ca.crt', '-CAkey', 'test-ca.key', '-CAcreateserial', '-out', 'server.crt', '-days', '2', '-extfile', 'san.cnf'], work.dir);
  const { uid, gid } = postgresUser();
  for (const f of ['server.key', 'server.crt', 'test-ca.crt', 'other-ca.crt']) await chown(join(work.dir, f), uid, gid);
  // TLS only from the network.
  await writeFile(join(c.data, 'pg_hba.conf'), 'local all all trust\nhostssl all all 127.0.0.1/32 trust\nhostnossl all all 127.0.0.1/32 reject\n');
  await c.configure({ ssl: 'on', ssl_cert_file: join(work.dir, 'server.crt'), ssl_key_file: join(work.dir, 'server.key') });
  await c.stop();
  await c.start();
}, 120_000);
afterAll(async () => {
  await c?.stop();
  await work?.cleanup();
});

const db = (extra: string, host = 'localhost') => `host=${host} port=${c.port} user=postgres dbname=postgres ${extra}`;
const backup = (conn: string, more: Record<string, string> = {}) => cofferAsPostgres(['--repo', repo, 'backup', '--db', conn], { ...env, ...more });

describe('PostgreSQL over TLS', () => {
  it('verify-full with the CA that signed the server certificate backs up', async () => {
    const r = await backup(db(`sslmode=verify-full sslrootcert=${join(work.dir, 'test-ca.crt')}`));
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
  }, 120_000);

  it('another CA, or a host name the certificate does not name, is refused before anything is read (exit 18)', async () => {
    const before = (await cofferAsPostgres(['--repo', repo, 'list', '--json'], env)).stdout;
    const wrongCa = await backup(db(`sslmode=verify-full sslrootcert=${join(work.dir, 'other-ca.crt')}`));
    expect(wrongCa.status).toBe(EXIT_CODES.COFFER_POSTGRES_ERROR);
    expect(wrongCa.stderr).toMatch(/cannot connect to localhost:\d+ as postgres: .*(self.signed|unable to verify|certificate)/i);
    const wrongName = await backup(db(`sslmode=verify-full sslrootcert=${join(work.dir, 'test-ca.crt')}`, '127.0.0.1'));
    expect(wrongName.status).toBe(EXIT_CODES.COFFER_POSTGRES_ERROR);
    expect(wrongName.stderr).toMatch(/IP: 127\.0\.0\.1 is not in the cert's list/i);
    // Neither wrote a backup.
    expect((await cofferAsPostgres(['--repo', repo, 'list', '--json'], env)).stdout).toBe(before);
    // verify-ca checks the chain, not the name.
    const caOnly = await backup(db(`sslmode=verify-ca sslrootcert=${join(work.dir, 'test-ca.crt')}`, '127.0.0.1'));
    expect(caOnly.stderr).toBe('');
    expect(caOnly.status).toBe(0);
    expect((await cofferAsPostgres(['--repo', repo, 'list', '--json'], env)).stdout).not.toBe(before);
  }, 120_000);

  it('the libpq environment variables work as the keywords do; a plain connection is turned away', async () => {
    const viaEnv = await cofferAsPostgres(['--repo', repo, 'backup'], { ...env, ...c.pgEnv, PGHOST: 'localhost', PGSSLMODE: 'verify-full', PGSSLROOTCERT: join(work.dir, 'test-ca.crt') });
    expect(viaEnv.stderr).toBe('');
    expect(viaEnv.status).toBe(0);
    const wrong = await cofferAsPostgres(['--repo', repo, 'backup'], { ...env, ...c.pgEnv, PGHOST: 'localhost', PGSSLMODE: 'verify-full', PGSSLROOTCERT: join(work.dir, 'other-ca.crt') });
    expect(wrong.status).toBe(EXIT_CODES.COFFER_POSTGRES_ERROR);
    const plain = await backup(db('sslmode=disable'));
    expect(plain.status).toBe(EXIT_CODES.COFFER_POSTGRES_ERROR);
    expect(plain.stderr).toMatch(/no pg_hba\.conf entry|rejects connection/i);
    const missing = await backup(db(`sslmode=verify-full sslrootcert=${join(work.dir, 'absent.crt')}`));
    expect(missing.status).toBe(EXIT_CODES.COFFER_INVALID_ARGUMENT);
    expect(missing.stderr).toContain(`invalid sslrootcert: ${join(work.dir, 'absent.crt')}: ENOENT`);
  }, 120_000);
});
