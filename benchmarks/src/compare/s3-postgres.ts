/**
 * The PostgreSQL comparison on S3: Coffer and pgBackRest back up one cluster
 * (pgbench plus incompressible rows) into buckets of their own on one
 * radosgw, over TLS served by radosgw itself (beast's ssl_endpoint with the
 * sandbox's certificate: pgBackRest speaks only HTTPS to S3, so neither pays
 * for a proxy). Steps, tool after tool: a full backup; a day of
 * transactions, then an incremental backup; more transactions, whose WAL is
 * pushed to each repository untimed; a restore (timed with the `sync` that
 * makes it durable); the same restore started as a server that recovers
 * through the tool's restore_command to the end of the archive and is
 * promoted. Each step's S3 requests are radosgw's own count (its request
 * counter before and after, nothing else running), so both tools are counted
 * alike.
 */
import { spawnSync } from 'node:child_process';
import { chown, copyFile, mkdir, readdir, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CreateBucketCommand, ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import { LocalKeyProvider } from '@coffer/engine';
import { PostgresSandbox, RadosgwSandbox, radosgwMissing, serverUser } from '@coffer/verify';
import { run, versionOf, warm, type StepFigures } from './proc.js';
import { pgBackRestConf } from './tools.js';
import { archivingCluster } from './workloads.js';

export type S3StepName = 'full backup' | 'incremental backup' | 'restore' | 'restore + recovery to a promoted server';
export const S3_STEPS: readonly S3StepName[] = ['full backup', 'incremental backup', 'restore', 'restore + recovery to a promoted server'];

export interface S3Step extends StepFigures {
  /** Requests radosgw served during the step, and how many of them were object GETs and PUTs. */
  requests: number;
  gets: number;
  puts: number;
}

export interface S3ToolFigures {
  tool: string;
  version: string;
  settings: string;
  steps: Partial<Record<S3StepName, S3Step>>;
  /** Bytes in the tool's bucket after the incremental backup and the WAL. */
  storedBytes?: number;
  error?: string;
}

export interface S3PostgresFigures {
  description: string;
  /** Bytes of the cluster's files (pg_wal aside) at the full backup. */
  logicalBytes: number;
  /** WAL files pushed to each repository before the restores. */
  walFiles: number;
  tools: S3ToolFigures[];
}

export interface S3PostgresOptions {
  work: string;
  scale: number;
  /** Incompressible rows, in bytes. */
  noiseBytes: number;
  transactions: number;
  seed: number;
  log: (line: string) => void;
}

const PASSWORD = 'benchmark passphrase, not a secret';
const COFFER_BIN = fileURLToPath(new URL('../../../packages/cli/bin/coffer.js', import.meta.url));
const syncNow = () => spawnSync('sync');

/** One tool on S3: what each step runs. */
interface S3Tool {
  readonly name: string;
  readonly version: string;
  readonly settings: string;
  readonly bucket: string;
  init(): Promise<void>;
  backup(kind: 'full' | 'incremental'): Promise<StepFigures>;
  /** Archives WAL files into the repository (not timed). */
  pushWal(files: string[]): Promise<void>;
  /** Restores the latest backup into `to` (absent), ready to start and recover. */
  restore(to: string): Promise<StepFigures>;
  /** The environment the recovering server's restore_command needs. */
  readonly serverEnv: Record<string, string>;
}

interface Setting {
  server: RadosgwSandbox;
  cluster: PostgresSandbox;
  /** Readable by the server user: the CA and the tools' files. */
  home: string;
  caFile: string;
  tlsPort: string;
}

class CofferS3 implements S3Tool {
  readonly name = 'Coffer';
  readonly settings = 'zstd 3, AES-256-GCM, relation files in 8 KiB pages, workers per core; restore_command through the installed command, prefetching 2 at once';
  readonly bucket = 'coffer-pg';
  readonly serverEnv: Record<string, string>;
  private readonly repo = `s3://${this.bucket}/repo`;
  constructor(
    readonly version: string,
    private readonly s: Setting,
  ) {
    this.serverEnv = {
      ...s.server.awsEnv,
      AWS_ENDPOINT_URL_S3: s.server.tlsEndpoint,
      NODE_EXTRA_CA_CERTS: s.caFile,
      COFFER_KEY_FILE: join(s.home, 'coffer.key'),
    };
  }
  private coffer(args: string[], env: Record<string, string> = {}) {
    return run(process.execPath, [COFFER_BIN, '--repo', this.repo, '--quiet', ...args], { env: { ...this.serverEnv, ...env } });
  }
  async init(): Promise<void> {
    await writeFile(this.serverEnv.COFFER_KEY_FILE!, LocalKeyProvider.newKeyFileContent(), { mode: 0o600 });
    await ownedByServer(this.serverEnv.COFFER_KEY_FILE!);
    await this.coffer(['init']);
  }
  backup(): Promise<StepFigures> {
    // WAL reaches the repository after the backups (pushWal), as for pgBackRest (archive-check=n).
    return this.coffer(['backup', '--no-archive-check'], this.s.cluster.pgEnv);
  }
  async pushWal(files: string[]): Promise<void> {
    for (const f of files) await this.coffer(['wal-push', f]);
  }
  restore(to: string): Promise<StepFigures> {
    return this.coffer(['restore', 'latest', '--to', to]);
  }
}

class PgBackRestS3 implements S3Tool {
  readonly name = 'pgBackRest';
  readonly settings = 'compress-type=zst, process-max=2, aes-256-cbc, archive-async (archive-get queue 128 MiB)';
  readonly bucket = 'pgbackrest-pg';
  readonly serverEnv: Record<string, string>;
  private readonly conf: string;
  private full = true;
  constructor(
    readonly version: string,
    private readonly s: Setting,
  ) {
    this.conf = join(s.home, 'pgbackrest.conf');
    this.serverEnv = {
      PGBACKREST_REPO1_CIPHER_PASS: PASSWORD,
      PGBACKREST_REPO1_S3_KEY: s.server.accessKeyId,
      PGBACKREST_REPO1_S3_KEY_SECRET: s.server.secretAccessKey,
    };
  }
  private pgbackrest(args: string[]) {
    return run('pgbackrest', [`--config=${this.conf}`, '--stanza=bench', ...args], { asServerUser: true, env: this.serverEnv });
  }
  async init(): Promise<void> {
    const { home, cluster } = this.s;
    const repo = [
      'repo1-type=s3',
      `repo1-s3-bucket=${this.bucket}`,
      'repo1-s3-endpoint=127.0.0.1',
      `repo1-storage-port=${this.s.tlsPort}`,
      `repo1-storage-ca-file=${this.s.caFile}`,
      `repo1-s3-region=${this.s.server.region}`,
      'repo1-s3-uri-style=path',
      'repo1-path=/repo',
      // archive-get keeps a queue (128 MiB by default) during recovery, as Coffer's prefetcher does.
      'archive-async=y',
    ];
    await writeFile(this.conf, await pgBackRestConf(home, cluster, repo));
    await ownedByServer(this.conf);
    await this.pgbackrest(['stanza-create']);
  }
  backup(): Promise<StepFigures> {
    const type = this.full ? 'full' : 'incr';
    this.full = false;
    return this.pgbackrest(['backup', `--type=${type}`]);
  }
  async pushWal(files: string[]): Promise<void> {
    // One at a time and synchronously: the asynchronous push reads a pg_wal's .ready notes, which these files lack.
    for (const f of files) await this.pgbackrest(['archive-push', '--no-archive-async', f]);
  }
  async restore(to: string): Promise<StepFigures> {
    await ownedByServer(to, true);
    return this.pgbackrest(['restore', `--pg1-path=${to}`]);
  }
}

async function ownedByServer(path: string, dir = false): Promise<void> {
  if (dir) await mkdir(path, { recursive: true });
  const user = serverUser();
  if (user) await chown(path, user.uid, user.gid);
}

async function bucketBytes(s: Setting, bucket: string): Promise<number> {
  const client = new S3Client({ region: s.server.region, endpoint: s.server.endpoint, forcePathStyle: true, credentials: { accessKeyId: s.server.accessKeyId, secretAccessKey: s.server.secretAccessKey } });
  try {
    let bytes = 0;
    let token: string | undefined;
    do {
      const page = await client.send(new ListObjectsV2Command({ Bucket: bucket, ...(token ? { ContinuationToken: token } : {}) }));
      for (const o of page.Contents ?? []) bytes += o.Size ?? 0;
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
    return bytes;
  } finally {
    client.destroy();
  }
}

async function dataBytes(dir: string): Promise<number> {
  const r = spawnSync('du', ['-sb', '--exclude=pg_wal', dir], { encoding: 'utf8' });
  return Number(r.stdout.split('\t')[0]) || 0;
}

export async function s3PostgresFigures(o: S3PostgresOptions): Promise<S3PostgresFigures | { missing: string }> {
  const missing = radosgwMissing();
  if (missing) return { missing };
  const pgbr = versionOf('pgbackrest', ['version']);
  if (!pgbr) return { missing: 'pgBackRest is not installed (Debian package pgbackrest)' };
  const coffer = versionOf(process.execPath, [COFFER_BIN, '--version']);
  if (!coffer) return { missing: `${COFFER_BIN} did not run: build the project first (npm run build)` };

  const home = join(o.work, 's3-postgres');
  await rm(home, { recursive: true, force: true });
  await ownedByServer(home, true);
  const estimate = o.scale * 16e6 + o.noiseBytes;
  const server = await RadosgwSandbox.start({ memoryBytes: Math.max(4 * 2 ** 30, Math.round(estimate * 6)) });
  const { cluster, archiveDir, cleanup } = await archivingCluster('s3');
  try {
    const caFile = join(home, 'ca.pem');
    await copyFile(server.caFile, caFile);
    await ownedByServer(caFile);
    const s: Setting = { server, cluster, home, caFile, tlsPort: new URL(server.tlsEndpoint).port };
    const admin = new S3Client({ region: server.region, endpoint: server.endpoint, forcePathStyle: true, credentials: { accessKeyId: server.accessKeyId, secretAccessKey: server.secretAccessKey } });
    const tools: S3Tool[] = [new CofferS3(coffer, s), new PgBackRestS3(pgbr.replace(/^pgBackRest /, ''), s)];
    for (const t of tools) await admin.send(new CreateBucketCommand({ Bucket: t.bucket }));
    admin.destroy();

    o.log(`S3: loading pgbench scale ${o.scale} and ${(o.noiseBytes / 1e6).toFixed(0)} MB of incompressible rows`);
    const pgbench = join(cluster.install.bin, 'pgbench');
    const conn = ['-h', '127.0.0.1', '-p', String(cluster.port), '-U', 'postgres', 'postgres'];
    await run(pgbench, ['-i', '-q', '-s', String(o.scale), ...conn]);
    const rows = Math.max(1, Math.round(o.noiseBytes / 1024));
    await cluster.query(`SELECT setseed(${(o.seed % 1000) / 1000})`);
    await cluster.query(`CREATE TABLE noise (id int PRIMARY KEY, payload bytea NOT NULL)`);
    // 1 KiB of random bytes a row: no compression gains on it, as on encrypted or already compressed columns.
    await cluster.query(`INSERT INTO noise SELECT g, (SELECT decode(string_agg(md5(random()::text || g || i), ''), 'hex') FROM generate_series(1, 64) i) FROM generate_series(1, ${rows}) g`);
    await cluster.query('CHECKPOINT');
    await cluster.archiveNow(300_000);
    const before = new Set(await readdir(archiveDir));
    const logicalBytes = await dataBytes(cluster.data);

    const figures = tools.map((t): S3ToolFigures => ({ tool: t.name, version: t.version, settings: t.settings, steps: {} }));
    const step = async (i: number, name: S3StepName, fn: () => Promise<StepFigures>): Promise<void> => {
      const f = figures[i]!;
      if (f.error) return;
      try {
        syncNow();
        const c0 = await server.requestCounts();
        const r = await fn();
        const c1 = await server.requestCounts();
        f.steps[name] = { ...r, requests: c1.requests - c0.requests, gets: c1.gets - c0.gets, puts: c1.puts - c0.puts };
        o.log(`  ${f.tool}: ${name} ${(r.ms / 1000).toFixed(2)} s, ${c1.requests - c0.requests} requests`);
      } catch (e) {
        f.error = `${name}: ${(e as Error).message}`;
        o.log(`  ${f.tool} failed: ${f.error}`);
      }
    };

    for (const [i, t] of tools.entries()) {
      try {
        await t.init();
      } catch (e) {
        figures[i]!.error = `init: ${(e as Error).message}`;
      }
    }
    await warm(cluster.data);
    for (const [i, t] of tools.entries()) await step(i, 'full backup', () => t.backup('full'));
    o.log(`S3: a day of ${o.transactions.toLocaleString('en-US')} transactions`);
    await run(pgbench, ['-n', '-c', '1', '-j', '1', '-t', String(o.transactions), `--random-seed=${o.seed + 1}`, ...conn]);
    await cluster.query('CHECKPOINT');
    await warm(cluster.data);
    for (const [i, t] of tools.entries()) await step(i, 'incremental backup', () => t.backup('incremental'));
    // WAL past the last backup, so that recovery replays some.
    await run(pgbench, ['-n', '-c', '1', '-j', '1', '-t', String(Math.ceil(o.transactions / 4)), `--random-seed=${o.seed + 2}`, ...conn]);
    await cluster.archiveNow(300_000);
    const wal = (await readdir(archiveDir)).filter((n) => !before.has(n) && /^[0-9A-F]{24}$/.test(n)).sort().map((n) => join(archiveDir, n));
    o.log(`S3: pushing ${wal.length} WAL files to each repository (not timed)`);
    for (const [i, t] of tools.entries()) {
      if (figures[i]!.error) continue;
      try {
        await t.pushWal(wal);
        figures[i]!.storedBytes = await bucketBytes(s, t.bucket);
      } catch (e) {
        figures[i]!.error = `WAL: ${(e as Error).message}`;
      }
    }
    await cluster.stop();

    for (const [i, t] of tools.entries()) {
      const to = join(home, `restored-${i}`);
      let restore: StepFigures | undefined;
      await step(i, 'restore', async () => {
        restore = await t.restore(to);
        const t0 = performance.now();
        syncNow();
        return { ms: restore.ms + (performance.now() - t0), maxRssMiB: restore.maxRssMiB };
      });
      if (!restore) continue;
      const restoredMs = figures[i]!.steps.restore!.ms;
      await step(i, 'restore + recovery to a promoted server', async () => {
        // A server runs as its own user: what a restore as root wrote is handed over (not timed, nor the restore again).
        spawnSync('chown', ['-R', `${serverUser()?.uid ?? 0}:${serverUser()?.gid ?? 0}`, to]);
        const pg = await PostgresSandbox.adopt(cluster.install, to, { serverEnv: t.serverEnv });
        const t0 = performance.now();
        try {
          await pg.start({ archive_mode: 'off' }, 600);
          await pg.waitPromoted(600_000);
          return { ms: restoredMs + (performance.now() - t0), maxRssMiB: undefined };
        } finally {
          await pg.stop('immediate').catch(() => undefined);
        }
      });
      // The step is the restore and the recovery: the restore's requests count too.
      const both = figures[i]!.steps['restore + recovery to a promoted server'];
      const alone = figures[i]!.steps.restore!;
      if (both) Object.assign(both, { requests: both.requests + alone.requests, gets: both.gets + alone.gets, puts: both.puts + alone.puts, maxRssMiB: alone.maxRssMiB });
      await rm(to, { recursive: true, force: true });
    }
    return {
      description: `pgbench scale ${o.scale} and ${(o.noiseBytes / 1e6).toFixed(0)} MB of incompressible rows; a day of ${o.transactions.toLocaleString('en-US')} pgbench transactions between the backups, a quarter of that after the second`,
      logicalBytes,
      walFiles: wal.length,
      tools: figures,
    };
  } finally {
    await cleanup();
    await server.stop();
  }
}
