/**
 * The world the PostgreSQL runbooks run in (`<!-- runbook-env: postgres -->`),
 * built of the parts production has: region A is a PostgreSQL 15 cluster
 * archiving into bucket A on radosgw, reached through a proxy that stands
 * for region A's network, its data keys wrapped by KMS key A; region B holds
 * a mirror of the repository in bucket B, reached directly, wrapped by KMS
 * key B too; BIND serves the name clients use, updated with a TSIG key from
 * a secret file. A runbook's hidden incidents call `incident <what>` to make
 * things happen to this world that no operator command does: region A's
 * network and key going away and coming back, a pack rotting in bucket A.
 */
import { spawnSync } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import { chmod, chown, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { GetObjectCommand, ListObjectsV2Command, PutObjectCommand, type _Object } from '@aws-sdk/client-s3';
import { startBind } from './bind.js';
import { KmsTestServer } from './kms-server.js';
import { Cluster, cofferAsPostgres, debianInstall, freePort, pgScratch, postgresUser, stopArchivers } from './pg.js';
import { newBucket, s3Client, s3Env, s3Server } from './s3.js';
import { TcpProxy } from './tcp-proxy.js';

const BIN = fileURLToPath(new URL('../../node_modules/.bin/', import.meta.url));

/** The world a runbook runs in: its environment, the user its steps run as, and how to take it down. */
export interface RunbookWorld {
  env: NodeJS.ProcessEnv;
  as?: { uid: number; gid: number };
  cleanup: () => Promise<void>;
}

/** Where region B's server listens: an address of its own, so that moving the name means something. */
const REGION_B_HOST = '127.0.0.6';
const DNS_NAME = 'primary.db.test';

/** Flips four bytes inside the oldest pack of `bucket`'s repository at `prefix`, as rot or a bad disk under the store would. */
async function corruptOldestPack(bucket: string, prefix: string): Promise<string> {
  const client = s3Client();
  try {
    const objects: _Object[] = [];
    let token: string | undefined;
    do {
      const page = await client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: `${prefix}/data/`, ...(token ? { ContinuationToken: token } : {}) }));
      objects.push(...(page.Contents ?? []));
      token = page.NextContinuationToken;
    } while (token);
    const oldest = objects.filter((o) => (o.Size ?? 0) > 300).sort((a, b) => a.LastModified!.getTime() - b.LastModified!.getTime() || a.Key!.localeCompare(b.Key!))[0];
    if (!oldest) throw new Error(`no pack under s3://${bucket}/${prefix}/data/`);
    const body = Buffer.from(await (await client.send(new GetObjectCommand({ Bucket: bucket, Key: oldest.Key! }))).Body!.transformToByteArray());
    body.fill(0xff, 200, 204);
    await client.send(new PutObjectCommand({ Bucket: bucket, Key: oldest.Key!, Body: body }));
    return oldest.Key!;
  } finally {
    client.destroy();
  }
}

/**
 * Production, as the PostgreSQL runbooks find it: a PostgreSQL 15 cluster
 * (DDL logged with its time, as the PITR procedure advises) archiving into
 * region A's repository, a shop's `orders` table of 1,000 rows, a base
 * backup, and region B's mirror of it all.
 */
export async function postgresWorld(): Promise<RunbookWorld> {
  const install = debianInstall();
  const user = postgresUser();
  const work = await pgScratch('coffer-runbook-pg-');
  const done: Array<() => Promise<unknown>> = [];
  const cleanup = async () => {
    for (const undo of done.reverse()) await undo().catch(() => undefined);
    await work.cleanup();
  };
  try {
    const s3 = s3Server();
    const radosgw = new URL(s3.endpoint);
    const regionA = await TcpProxy.start(radosgw.hostname, Number(radosgw.port));
    done.push(() => regionA.stop());
    const regionAS3 = `http://127.0.0.1:${regionA.port}`;
    const regionBS3 = s3.endpoint;
    const kms = await KmsTestServer.start({ accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey });
    done.push(() => kms.stop());
    const keyA = await kms.createKey('us-east-1');
    const keyB = await kms.createKey('eu-west-1');
    const newKey = await kms.createKey('us-east-1');
    const bind = await startBind('db.test', { primary: '127.0.0.1' });
    done.push(() => bind.stop());

    const bucketA = await newBucket();
    const bucketB = await newBucket();
    const repo = `s3://${bucketA}/pg`;
    const mirrorRepo = `s3://${bucketB}/pg`;
    // Region A's settings, as production's hosts have them (the S3 credentials are the same user on both sides here).
    const regionAEnv = { ...s3Env(regionAS3), AWS_ENDPOINT_URL_KMS: kms.endpoint, COFFER_KMS_KEY_ID: keyA, COFFER_TO_AWS_ENDPOINT_URL_S3: regionBS3 };
    for (const args of [['init'], ['key', 'add', '--kms-key-id', keyB]]) {
      const r = await cofferAsPostgres(['--repo', repo, ...args], regionAEnv);
      if (r.status !== 0) throw new Error(`coffer ${args.join(' ')}: ${r.stderr}`);
    }
    const cluster = await Cluster.create(install, work.dir, { archiveRepo: repo, env: regionAEnv, conf: { log_statement: 'ddl', log_line_prefix: '%m [%p] ', log_timezone: 'UTC' } });
    done.push(async () => {
      await stopArchivers(cluster.data);
      await cluster.stop('immediate');
    });
    await cluster.start();
    await cluster.query('CREATE TABLE orders (id int PRIMARY KEY, customer text NOT NULL, amount numeric NOT NULL)');
    await cluster.query(`INSERT INTO orders SELECT g, 'customer-' || (g % 97), (g * 37) % 1000 FROM generate_series(1, 1000) g`);
    for (const args of [['backup'], ['mirror', '--to', mirrorRepo]]) {
      const r = await cofferAsPostgres(['--repo', repo, ...args], { ...regionAEnv, ...cluster.pgEnv });
      if (r.status !== 0) throw new Error(`coffer ${args.join(' ')}: ${r.stderr}`);
    }

    const notes = join(work.dir, 'notes');
    await mkdir(notes);
    await chown(notes, user.uid, user.gid);
    const secret = async (name: string, text: string) => {
      const file = join(notes, name);
      await writeFile(file, text, { mode: 0o600 });
      await chmod(file, 0o600);
      await chown(file, user.uid, user.gid);
      return file;
    };
    // Operator-provisioned files: the TSIG key the DNS provider gave, and what reaching region B from there takes.
    const dnsKeyFile = await secret('dns.key', `key "${bind.keyName}" {\n  algorithm hmac-sha256;\n  secret "${bind.secret}";\n};\n`);
    const regionBEnvFile = await secret('region-b.env', `export AWS_ENDPOINT_URL_S3=${regionBS3} COFFER_KMS_KEY_ID=${keyB} COFFER_TO_AWS_ENDPOINT_URL_S3=${regionAS3}\n`);

    // What incidents do to the world, asked for over HTTP by the `incident` command.
    const control: Server = createServer((req, res) => {
      void (async () => {
        try {
          let said = '';
          if (req.url === '/lose-region-a') {
            regionA.cut();
            kms.setEnabled(keyA, false);
          } else if (req.url === '/region-a-back') {
            kms.setEnabled(keyA, true);
            regionA.heal();
          } else if (req.url === '/corrupt-oldest-pack') {
            said = await corruptOldestPack(bucketA, 'pg');
          } else throw new Error(`no incident ${req.url}`);
          res.writeHead(200).end(said);
        } catch (e) {
          res.writeHead(500).end((e as Error).message);
        }
      })();
    });
    await new Promise<void>((r) => control.listen(0, '127.0.0.1', r));
    done.push(() => new Promise<void>((r) => control.close(() => r())));
    const bin = join(work.dir, 'incident-bin');
    await mkdir(bin);
    const controlUrl = `http://127.0.0.1:${(control.address() as { port: number }).port}`;
    await writeFile(
      join(bin, 'incident'),
      `#!/bin/sh\nexec "$COFFER_NODE" -e 'fetch(process.argv[1] + "/" + process.argv[2], { method: "POST" }).then(async (r) => { const t = await r.text(); if (!r.ok) { console.error(t); process.exit(1); } }, (e) => { console.error(e.message); process.exit(1); })' ${controlUrl} "$1"\n`,
      { mode: 0o755 },
    );

    const env = {
      PATH: `${BIN}:${bin}:${install.bin}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin`,
      HOME: notes,
      LANG: 'C.UTF-8',
      COFFER_NODE: process.execPath,
      COFFER_REPO: repo,
      ...regionAEnv,
      ...cluster.pgEnv,
      PGDATA: cluster.data,
      PGLOG: `${cluster.data}.log`,
      MIRROR_REPO: mirrorRepo,
      REGION_B_ENV: regionBEnvFile,
      REGION_B_HOST,
      NEW_KMS_KEY_ID: newKey,
      NEW_REPO: `s3://${bucketA}/pg-new`,
      NEW_MIRROR_REPO: `s3://${bucketB}/pg-new`,
      DNS_SERVER: '127.0.0.1',
      DNS_PORT: String(bind.port),
      DNS_NAME,
      DNS_KEY_FILE: dnsKeyFile,
      RESTORE_DIR: join(work.dir, 'restored'),
      RESTORE_PORT: String(await freePort()),
      WORK: notes,
    };
    done.push(async () => {
      spawnSync(join(install.bin, 'pg_ctl'), ['-D', env.RESTORE_DIR, '-m', 'immediate', 'stop'], { ...user, stdio: 'ignore' });
      await stopArchivers(env.RESTORE_DIR);
    });
    return { env, as: user, cleanup };
  } catch (e) {
    await cleanup();
    throw e;
  }
}
