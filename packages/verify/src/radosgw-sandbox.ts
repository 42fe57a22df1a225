/**
 * A throwaway S3 server: Ceph's radosgw over a one-monitor, one-OSD cluster
 * whose OSD keeps objects in memory (`memstore`), on loopback ports chosen at
 * run time. Tests and benchmarks start one to talk to a real S3
 * implementation instead of a mock.
 *
 * What it takes to start (found by trying): with `auth = none`, every
 * `ms_*_mode` setting (cluster, service, client and their `mon_` twins) must be
 * `crc` or radosgw loops on authentication; pool size 1 and a few placement
 * groups; the S3 user is created only once radosgw answers HTTP, and its keys
 * are read back before use. Stop order matters: radosgw before the OSD before
 * the monitor, or radosgw hangs on shutdown waiting for the cluster.
 *
 * SSE-KMS is served by radosgw's `testing` key backend, which resolves key ids
 * from a static table: `sseKmsKeyId` names the one key it holds.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './postgres-sandbox.js';

const BINARIES = ['ceph-mon', 'ceph-osd', 'radosgw', 'radosgw-admin', 'ceph', 'monmaptool', 'openssl'] as const;
const INSTALL_HINT = 'install the Debian packages radosgw, ceph-mon, ceph-osd and openssl (.ci/run does)';

export interface RadosgwOptions {
  /** Parent of the sandbox directory (default: the OS temp directory). */
  parent?: string;
  /** Bytes the in-memory OSD may hold (default 4 GiB; it allocates as it fills). */
  memoryBytes?: number;
  /** How long to wait for the whole cluster to answer (default 120 s). */
  timeoutMs?: number;
}

/** Where radosgw's binaries are missing, as a message; `undefined` when all are installed. */
export function radosgwMissing(): string | undefined {
  const missing = BINARIES.filter((b) => !['/usr/bin', '/usr/sbin', '/usr/local/bin'].some((d) => existsSync(join(d, b))));
  return missing.length ? `Ceph's S3 server is not installed (missing ${missing.join(', ')}): ${INSTALL_HINT}` : undefined;
}

function run(cmd: string, args: string[], timeoutMs = 60_000): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { timeout: timeoutMs, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${cmd} ${args.join(' ')} failed: ${err.message}\n${stderr}`));
      else resolve(stdout);
    });
  });
}

export class RadosgwSandbox {
  readonly dir: string;
  readonly endpoint: string;
  /** The same server over TLS, with a certificate for 127.0.0.1 (only) from the sandbox's own CA. */
  readonly tlsEndpoint: string;
  /** That CA's certificate (PEM): trust it (NODE_EXTRA_CA_CERTS) to reach `tlsEndpoint`. */
  readonly caFile: string;
  readonly region = 'us-east-1';
  readonly accessKeyId: string;
  readonly secretAccessKey: string;
  /** The SSE-KMS key id radosgw's testing key backend knows. */
  readonly sseKmsKeyId = 'coffer-sse-test-key';
  /** A storage class besides STANDARD that this server accepts. */
  readonly extraStorageClass = 'STANDARD_IA';
  private readonly conf: string;
  private readonly children: { name: string; child: ChildProcess }[] = [];

  private constructor(dir: string, endpoint: string, tlsEndpoint: string, credentials: { accessKeyId: string; secretAccessKey: string }) {
    this.dir = dir;
    this.endpoint = endpoint;
    this.tlsEndpoint = tlsEndpoint;
    this.caFile = join(dir, 'ca.crt');
    this.accessKeyId = credentials.accessKeyId;
    this.secretAccessKey = credentials.secretAccessKey;
    this.conf = join(dir, 'ceph.conf');
  }

  /** Environment variables through which the AWS SDK (and `coffer`) reach this server. */
  get awsEnv(): Record<string, string> {
    return {
      AWS_ACCESS_KEY_ID: this.accessKeyId,
      AWS_SECRET_ACCESS_KEY: this.secretAccessKey,
      AWS_REGION: this.region,
      AWS_ENDPOINT_URL_S3: this.endpoint,
    };
  }

  static async start(options: RadosgwOptions = {}): Promise<RadosgwSandbox> {
    const missing = radosgwMissing();
    if (missing) throw new Error(missing);
    const dir = await mkdtemp(join(options.parent ?? tmpdir(), 'coffer-rgw-'));
    const [monPort, rgwPort, tlsPort] = [await freePort(), await freePort(), await freePort()];
    const sandbox = new RadosgwSandbox(dir, `http://127.0.0.1:${rgwPort}`, `https://127.0.0.1:${tlsPort}`, {
      accessKeyId: 'COFFER' + randomBytes(7).toString('hex').toUpperCase(),
      secretAccessKey: randomBytes(24).toString('base64url'),
    });
    try {
      await sandbox.boot(monPort, rgwPort, tlsPort, options);
    } catch (e) {
      const logs = await sandbox.logTail();
      await sandbox.stop();
      throw new Error(`radosgw sandbox did not start: ${(e as Error).message}\n${logs}`);
    }
    return sandbox;
  }

  private async boot(monPort: number, rgwPort: number, tlsPort: number, options: RadosgwOptions): Promise<void> {
    const { dir } = this;
    const fsid = randomUUID();
    const until = Date.now() + (options.timeoutMs ?? 120_000);
    await Promise.all(['run', 'log', 'mon-a', 'osd-0', 'rgw'].map((d) => mkdir(join(dir, d))));
    await this.makeCertificates();
    const mon = `v2:127.0.0.1:${monPort}`;
    await writeFile(
      this.conf,
      `[global]
fsid = ${fsid}
mon host = ${mon}
mon initial members = a
auth cluster required = none
auth service required = none
auth client required = none
auth allow insecure global id reclaim = true
ms cluster mode = crc
ms service mode = crc
ms client mode = crc
ms mon cluster mode = crc
ms mon service mode = crc
ms mon client mode = crc
ms bind msgr1 = false
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
mon allow pool size one = true
mon warn on pool no redundancy = false
mon warn on insecure global id reclaim allowed = false
osd crush chooseleaf type = 0
osd objectstore = memstore
memstore device bytes = ${options.memoryBytes ?? 4 * 1024 ** 3}
run dir = ${dir}/run
log file = ${dir}/log/$name.log
admin socket = ${dir}/run/$name.asok
pid file = ${dir}/run/$name.pid
mon data = ${dir}/mon-$id
osd data = ${dir}/osd-$id
keyring = ${dir}/keyring
debug ms = 0
[client.rgw]
rgw frontends = beast endpoint=127.0.0.1:${rgwPort} ssl_endpoint=127.0.0.1:${tlsPort} ssl_certificate=${dir}/rgw-tls.pem tcp_nodelay=1
rgw data = ${dir}/rgw
rgw crypt require ssl = false
rgw crypt s3 kms backend = testing
rgw crypt s3 kms encryption keys = ${this.sseKmsKeyId}=${randomBytes(32).toString('base64')}
`,
    );
    await writeFile(join(dir, 'keyring'), '');
    await run('monmaptool', ['--create', '--add', 'a', mon, '--fsid', fsid, join(dir, 'monmap')]);
    await run('ceph-mon', ['-c', this.conf, '--mkfs', '-i', 'a', '--monmap', join(dir, 'monmap')]);
    this.daemon('mon', 'ceph-mon', ['-f', '-c', this.conf, '-i', 'a']);
    const osdUuid = randomUUID();
    const osdId = (await run('ceph', ['-c', this.conf, '--connect-timeout', '30', 'osd', 'new', osdUuid])).trim();
    if (osdId !== '0') throw new Error(`expected OSD id 0, got ${JSON.stringify(osdId)}`);
    await run('ceph-osd', ['-c', this.conf, '-i', '0', '--mkfs', '--osd-uuid', osdUuid]);
    this.daemon('osd', 'ceph-osd', ['-f', '-c', this.conf, '-i', '0']);
    await this.startRadosgw(until);
    // A second storage class, so that per-kind storage classes are observable. The default zone exists
    // only once radosgw has run, and radosgw reads zone placement when it starts: hence the restart.
    await this.admin(['zonegroup', 'placement', 'add', '--rgw-zonegroup', 'default', '--placement-id', 'default-placement', '--storage-class', this.extraStorageClass]);
    await this.admin(['zone', 'placement', 'add', '--rgw-zone', 'default', '--placement-id', 'default-placement', '--storage-class', this.extraStorageClass, '--data-pool', 'default.rgw.ia.data']);
    await stopChild(this.children.pop()!.child); // a killed radosgw leaves watches that stall the next one for ~30 s
    await this.startRadosgw(until);
    await this.admin(['user', 'create', '--uid', 'coffer', '--display-name', 'coffer tests', '--access-key', this.accessKeyId, '--secret-key', this.secretAccessKey]);
    // A user whose keys did not register makes every request fail with InvalidAccessKeyId.
    const info = JSON.parse(await this.admin(['user', 'info', '--uid', 'coffer'])) as { keys?: { access_key: string }[] };
    if (!info.keys?.some((k) => k.access_key === this.accessKeyId)) throw new Error('the S3 user was created without its keys');
  }

  /** A CA of the sandbox's own, and a server certificate it signs for 127.0.0.1 (not for localhost: a name it does not carry). */
  private async makeCertificates(): Promise<void> {
    const { dir } = this;
    await run('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', join(dir, 'ca.key'), '-out', this.caFile, '-days', '7', '-subj', '/CN=coffer test CA']);
    await run('openssl', ['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', join(dir, 'rgw.key'), '-out', join(dir, 'rgw.csr'), '-subj', '/CN=127.0.0.1']);
    // The address as a DNS name too: pgBackRest matches the host it connects to against DNS names only.
    await writeFile(join(dir, 'san.cnf'), 'subjectAltName = IP:127.0.0.1, DNS:127.0.0.1\n');
    await run('openssl', ['x509', '-req', '-in', join(dir, 'rgw.csr'), '-CA', this.caFile, '-CAkey', join(dir, 'ca.key'), '-CAcreateserial', '-out', join(dir, 'rgw.crt'), '-days', '7', '-extfile', join(dir, 'san.cnf')]);
    // beast reads the key from the certificate file when no ssl_private_key is given.
    await writeFile(join(dir, 'rgw-tls.pem'), (await readFile(join(dir, 'rgw.crt'), 'utf8')) + (await readFile(join(dir, 'rgw.key'), 'utf8')), { mode: 0o600 });
  }

  private async startRadosgw(until: number): Promise<void> {
    this.daemon('rgw', 'radosgw', ['-f', '-c', this.conf, '-n', 'client.rgw']);
    while (!(await answers(this.endpoint))) {
      for (const { name, child } of this.children) if (child.exitCode !== null) throw new Error(`${name} exited with status ${child.exitCode}`);
      if (Date.now() > until) throw new Error(`radosgw did not answer on ${this.endpoint} in time`);
      await new Promise((r) => setTimeout(r, 250));
    }
  }

  private daemon(name: string, cmd: string, args: string[]): void {
    const child = spawn(cmd, args, { stdio: 'ignore' });
    child.on('error', () => undefined);
    this.children.push({ name, child });
  }

  /**
   * radosgw's own count of the requests it has served since it started (its
   * performance counters, read over the admin socket): every client is counted
   * the same way, whatever it does or does not report of itself.
   */
  async requestCounts(): Promise<{ requests: number; gets: number; puts: number }> {
    const dump = JSON.parse(await run('ceph', ['--admin-daemon', join(this.dir, 'run', 'client.rgw.asok'), 'perf', 'dump'])) as { rgw?: { req?: number; get?: number; put?: number } };
    const rgw = dump.rgw;
    if (typeof rgw?.req !== 'number' || typeof rgw.get !== 'number' || typeof rgw.put !== 'number') throw new Error('radosgw perf dump: no rgw req/get/put counters');
    return { requests: rgw.req, gets: rgw.get, puts: rgw.put };
  }

  /** Runs `radosgw-admin` against this cluster; resolves to its standard output. */
  admin(args: string[]): Promise<string> {
    return run('radosgw-admin', ['-c', this.conf, ...args]);
  }

  private async logTail(): Promise<string> {
    const parts: string[] = [];
    for (const name of ['mon.a', 'osd.0', 'client.rgw']) {
      const text = await readFile(join(this.dir, 'log', `${name}.log`), 'utf8').catch(() => '');
      if (text) parts.push(`--- ${name}.log (tail)\n${text.split('\n').slice(-15).join('\n')}`);
    }
    return parts.join('\n');
  }

  /** Stops radosgw, then the OSD, then the monitor, and removes the sandbox. */
  async stop(): Promise<void> {
    // radosgw keeps no state of its own (the OSD does), so it need not shut down cleanly, which takes seconds.
    for (const { name, child } of [...this.children].reverse()) await stopChild(child, name === 'rgw' ? 'SIGKILL' : 'SIGTERM');
    await rm(this.dir, { recursive: true, force: true });
  }
}

async function stopChild(child: ChildProcess, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  child.kill(signal);
  const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
  await exited;
  clearTimeout(timer);
}

async function answers(endpoint: string): Promise<boolean> {
  try {
    const res = await fetch(endpoint, { signal: AbortSignal.timeout(2000) });
    await res.arrayBuffer();
    return res.status === 200;
  } catch {
    return false;
  }
}
