/**
 * The workloads of the comparison, generated here and deterministic by seed:
 * (a) pgbench at a scale, then days of a fixed number of transactions;
 * (b) an OLTP-like schema that compresses about as poorly as real data, with
 *     daily inserts, skewed updates, deletes and VACUUM;
 * (c) the WAL both produce (archived by copying, day by day);
 * (d) a plain file tree edited daily with insertions, appends, renames.
 */
import { chown, mkdir, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { findPostgres, PostgresSandbox, serverScratch, serverUser } from '@coffer/verify';
import { run } from './proc.js';

export interface PgWorkload {
  name: string;
  description: string;
  cluster: PostgresSandbox;
  /** Where archive_command copies WAL files. */
  archiveDir: string;
  /** Day 0 loads the data; day n ≥ 1 runs that day's changes. Both end checkpointed, with the day's WAL archived. */
  day(n: number): Promise<void>;
  close(): Promise<void>;
}

/** A PostgreSQL cluster of the Debian install whose archive_command copies each WAL file into `archiveDir`. */
export async function archivingCluster(name: string): Promise<{ cluster: PostgresSandbox; archiveDir: string; cleanup: () => Promise<void> }> {
  const scratch = await serverScratch(`coffer-bench-${name}-`);
  const archiveDir = join(scratch.dir, 'archive');
  const install = findPostgres();
  const cluster = await PostgresSandbox.create(install, scratch.dir, {
    archiveCommand: `test ! -f ${archiveDir}/%f && cp %p ${archiveDir}/%f`,
    // Determinism and a steady day: no autovacuum, no timed checkpoints, WAL kept until archived.
    conf: { autovacuum: 'off', checkpoint_timeout: '1h', max_wal_size: '16GB', shared_buffers: '256MB', synchronous_commit: 'off' },
  });
  await mkdir(archiveDir);
  const user = serverUser();
  if (user) await chown(archiveDir, user.uid, user.gid);
  await cluster.start();
  return {
    cluster,
    archiveDir,
    cleanup: async () => {
      await cluster.stop();
      await scratch.cleanup();
    },
  };
}

async function endOfDay(c: PostgresSandbox): Promise<void> {
  await c.query('CHECKPOINT');
  await c.archiveNow(300_000);
}

export async function pgbenchWorkload(scale: number, transactionsPerDay: number, seed: number): Promise<PgWorkload> {
  const { cluster, archiveDir, cleanup } = await archivingCluster('pgbench');
  const pgbench = join(cluster.install.bin, 'pgbench');
  const conn = ['-h', '127.0.0.1', '-p', String(cluster.port), '-U', 'postgres', 'postgres'];
  return {
    name: 'pgbench',
    description: `pgbench scale ${scale}, then ${transactionsPerDay.toLocaleString('en-US')} TPC-B-like transactions a day (one client, --random-seed=${seed}+day)`,
    cluster,
    archiveDir,
    async day(n) {
      if (n === 0) await run(pgbench, ['-i', '-q', '-s', String(scale), ...conn]);
      else await run(pgbench, ['-n', '-c', '1', '-j', '1', '-t', String(transactionsPerDay), `--random-seed=${seed + n}`, ...conn]);
      await endOfDay(cluster);
    },
    close: cleanup,
  };
}

/**
 * Orders with random text and numbers, jsonb, four btree indexes, and one row
 * in ten carrying ~3 KB of incompressible text that TOAST stores out of line.
 * Sizes are estimates (about 700 bytes per row with indexes and TOAST).
 */
export async function oltpWorkload(bytes: number, seed: number): Promise<PgWorkload> {
  const { cluster, archiveDir, cleanup } = await archivingCluster('oltp');
  const rows = Math.max(10_000, Math.round(bytes / 700));
  const rowSql = (from: string, to: string) => `
    INSERT INTO orders
    SELECT g,
      (random() * 100000)::int,
      timestamptz '2026-01-01' + random() * interval '300 days',
      round((random() * 10000)::numeric, 2),
      (ARRAY['new','paid','shipped','delivered','returned'])[1 + floor(random() * 5)::int],
      md5(random()::text) || '@example.com',
      CASE WHEN random() < 0.6 THEN substr(encode(sha256(random()::text::bytea), 'base64'), 1, 8 + floor(random() * 36)::int) END,
      jsonb_build_object('sku', 'SKU-' || floor(random() * 50000)::int, 'qty', 1 + floor(random() * 9)::int,
                         'price', round((random() * 500)::numeric, 2), 'tag', md5(random()::text)),
      CASE WHEN random() < 0.1 THEN (SELECT string_agg(encode(sha256((random() + g + i)::text::bytea), 'base64'), '') FROM generate_series(1, 70) s(i)) END
    FROM generate_series(${from}, ${to}) g`;
  const q = (sql: string) => cluster.query(sql);
  return {
    name: 'oltp',
    description: `OLTP-like orders table, ${rows.toLocaleString('en-US')} rows at first (random text and numbers, jsonb, 4 btree indexes, TOASTed text in 10% of rows); daily +2% inserts, 3% updated (half among the newest tenth), 0.5% deleted, VACUUM; setseed(${seed}+day)`,
    cluster,
    archiveDir,
    async day(n) {
      await q(`SELECT setseed(${((seed + n) % 1000) / 1000})`);
      if (n === 0) {
        await q(`CREATE TABLE orders (id bigint PRIMARY KEY, customer_id int NOT NULL, placed_at timestamptz NOT NULL, amount numeric(12,2) NOT NULL,
                 status text NOT NULL, email text NOT NULL, note text, attrs jsonb NOT NULL, doc text)`);
        await q(`ALTER TABLE orders ALTER COLUMN doc SET STORAGE EXTERNAL`);
        await q(rowSql('1', String(rows)));
        for (const ix of ['customer_id', 'placed_at', 'email', "(attrs->>'sku')"]) await q(`CREATE INDEX ON orders (${ix})`);
        await q('VACUUM ANALYZE orders');
      } else {
        const [{ max, count }] = (await cluster.query<{ max: string; count: string }>('SELECT max(id)::text AS max, count(*)::text AS count FROM orders')) as [{ max: string; count: string }];
        const hi = Number(max);
        const live = Number(count);
        await q(rowSql(String(hi + 1), String(hi + Math.round(live * 0.02))));
        const updates = Math.round(live * 0.03);
        const pick = (k: number, lo: number) => `SELECT ${lo} + floor(random() * ${hi - lo})::bigint FROM generate_series(1, ${k})`;
        await q(`UPDATE orders SET status = 'changed-${n}', amount = amount + 1, attrs = attrs || jsonb_build_object('day', ${n}, 'note', md5(random()::text))
                 WHERE id IN (${pick(updates >> 1, 1)} UNION ALL ${pick(updates >> 1, Math.floor(hi * 0.9))})`);
        await q(`DELETE FROM orders WHERE id IN (${pick(Math.round(live * 0.005), 1)})`);
        await q('VACUUM orders');
      }
      await endOfDay(cluster);
    },
    close: cleanup,
  };
}

/** WAL files archived since the previous call, in order. */
export class WalDays {
  private seen = new Set<string>();
  constructor(private readonly archiveDir: string) {}
  async next(): Promise<string[]> {
    const names = (await readdir(this.archiveDir)).filter((n) => !this.seen.has(n)).sort();
    for (const n of names) this.seen.add(n);
    return names.map((n) => join(this.archiveDir, n));
  }
}

/** A small deterministic PRNG (mulberry32): the same seed gives the same tree and the same edits. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Text from a made-up vocabulary (compresses about 3×) or random bytes, as files of a project or a document store do. */
function content(rand: () => number, bytes: number, words: string[]): Buffer {
  if (rand() < 0.25) {
    const b = Buffer.allocUnsafe(bytes + 4);
    for (let i = 0; i < bytes; i += 4) b.writeUInt32LE((rand() * 4294967296) >>> 0, i);
    return b.subarray(0, bytes);
  }
  const parts: string[] = [];
  let n = 0;
  while (n < bytes) {
    const w = words[Math.floor(rand() * words.length)]!;
    parts.push(w);
    n += w.length + 1;
  }
  return Buffer.from(parts.join(rand() < 0.5 ? ' ' : '\n')).subarray(0, bytes);
}

export interface TreeWorkload {
  name: string;
  description: string;
  dir: string;
  day(n: number): Promise<void>;
  close(): Promise<void>;
}

/** About `bytes` in files of 4 KiB – 4 MiB; each day edits 10% of files (insertions mid-file), appends to 5%, renames 2%, deletes 1% and adds 1%. */
export async function treeWorkload(root: string, bytes: number, seed: number): Promise<TreeWorkload> {
  const dir = join(root, 'tree');
  const rand = prng(seed);
  const words = Array.from({ length: 5000 }, () => Math.floor(rand() * 2 ** 40).toString(36).slice(0, 3 + Math.floor(rand() * 8)));
  let files: string[] = [];
  let serial = 0;
  const newFile = async () => {
    const rel = `d${Math.floor(rand() * 40)}/f${serial++}.dat`;
    await mkdir(join(dir, rel, '..'), { recursive: true });
    await writeFile(join(dir, rel), content(rand, Math.floor(4096 * 2 ** (rand() * 10)), words));
    files.push(rel);
  };
  const pickSome = (fraction: number) => {
    const k = Math.max(1, Math.round(files.length * fraction));
    return Array.from({ length: k }, () => files[Math.floor(rand() * files.length)]!).filter((v, i, a) => a.indexOf(v) === i);
  };
  return {
    name: 'tree',
    description: `file tree of about ${Math.round(bytes / 2 ** 20)} MiB (text from a 5,000-word vocabulary and 25% random files, 4 KiB – 4 MiB); daily: insertions into 10% of files, appends to 5%, renames of 2%, deletes of 1%, 1% new files (seed ${seed})`,
    dir,
    async day(n) {
      if (n === 0) {
        await rm(dir, { recursive: true, force: true });
        let total = 0;
        while (total < bytes) {
          await newFile();
          total += (await stat(join(dir, files[files.length - 1]!))).size;
        }
        return;
      }
      for (const rel of pickSome(0.1)) {
        const old = await readFile(join(dir, rel));
        const at = Math.floor(rand() * old.length);
        await writeFile(join(dir, rel), Buffer.concat([old.subarray(0, at), content(rand, 100 + Math.floor(rand() * 4000), words), old.subarray(at)]));
      }
      for (const rel of pickSome(0.05)) await writeFile(join(dir, rel), content(rand, 1000 + Math.floor(rand() * 50_000), words), { flag: 'a' });
      for (const rel of pickSome(0.02)) {
        const to = `d${Math.floor(rand() * 40)}/r${serial++}.dat`;
        await mkdir(join(dir, to, '..'), { recursive: true });
        await rename(join(dir, rel), join(dir, to));
        files = files.map((f) => (f === rel ? to : f));
      }
      for (const rel of pickSome(0.01)) {
        await rm(join(dir, rel));
        files = files.filter((f) => f !== rel);
      }
      for (let i = 0; i < Math.max(1, files.length / 100); i++) await newFile();
    },
    close: () => rm(dir, { recursive: true, force: true }),
  };
}
