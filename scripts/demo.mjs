#!/usr/bin/env node
// The Coffer demo on the embedded defaults: a local repository, a
// passphrase-derived key and a throwaway PostgreSQL cluster (Debian's server,
// or the embedded one from npm). It archives WAL, takes a base backup, writes
// more, restores to a point in time into a second directory, starts it and
// shows that exactly the rows committed up to that point are there.
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { embeddedPostgres, findPostgres, grantServerUserTraverse, PostgresSandbox, runAsServerUser, serverScratch } from '@coffer/verify';

const COFFER = fileURLToPath(new URL('../packages/cli/bin/coffer.js', import.meta.url));
// The command as it is installed (a shell script that confirms archive_command's calls without starting Node).
const COMMAND = fileURLToPath(new URL('../packages/cli/bin/coffer', import.meta.url));
const ROOT = fileURLToPath(new URL('..', import.meta.url));
const say = (s) => console.log(`demo: ${s}`);
// Secrets come from the environment; the demo makes up its own.
const env = { COFFER_PASSPHRASE: process.env.COFFER_PASSPHRASE ?? 'coffer demo passphrase' };

async function coffer(args, extraEnv = {}) {
  const r = await runAsServerUser(process.execPath, [COFFER, ...args], { ...env, ...extraEnv });
  if (r.status !== 0) throw new Error(`coffer ${args.join(' ')} failed (${r.status}): ${r.stderr}`);
  return r.stdout.trim();
}

/** SIGTERM to the `coffer wal-archiver` of a data directory, and a wait (10 s at most) for it to go. */
async function stopArchiver(pgdata) {
  const dir = join(pgdata, 'pg_wal', '.coffer-ack');
  for (const f of (await readdir(dir).catch(() => [])).filter((n) => /^archiver-.*\.pid$/.test(n))) {
    const pid = Number((await readFile(join(dir, f), 'utf8').catch(() => '')).split('\n')[0]);
    if (!(pid > 0)) continue;
    try {
      process.kill(pid, 'SIGTERM');
    } catch {
      continue;
    }
    for (let i = 0; i < 200; i++) {
      try {
        process.kill(pid, 0);
      } catch {
        break;
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}

// COFFER_DEMO_POSTGRES=embedded uses the npm-packaged server even where Debian's is installed.
const install = process.env.COFFER_DEMO_POSTGRES === 'embedded' ? embeddedPostgres() : findPostgres();
if (!install) throw new Error('the embedded PostgreSQL package is not installed (npm ci)');
for (const dir of grantServerUserTraverse(ROOT)) say(`granted o+x on ${dir} so the postgres user can run coffer as archive_command`);
const work = await serverScratch('coffer-demo-');
const clusters = [];
let ok = false;
try {
  const repo = join(work.dir, 'repository');
  say(`using ${install.label}; scratch directory ${work.dir}`);
  say(await coffer(['--repo', repo, 'init']));

  const source = await PostgresSandbox.create(install, work.dir, {
    checksums: true,
    archiveCommand: `${COMMAND} --repo ${repo} wal-push %p`,
    serverEnv: { ...env, COFFER_NODE: process.execPath },
  });
  clusters.push(source);
  await source.start();
  say(`source cluster up on 127.0.0.1:${source.port}, archiving WAL into the repository`);

  await source.query(`CREATE TABLE orders (id int PRIMARY KEY, customer text, amount numeric, placed timestamptz DEFAULT clock_timestamp())`);
  await source.query(`INSERT INTO orders SELECT g, 'customer-' || (g % 97), (g * 37) % 1000 FROM generate_series(1, 1000) g`);
  say('loaded 1000 orders; taking a base backup');
  for (const line of (await coffer(['--repo', repo, 'backup'], source.pgEnv)).split('\n')) say(`  ${line}`);

  let target;
  for (let id = 1001; id <= 1100; id++) {
    await source.query(`INSERT INTO orders(id, customer, amount) VALUES ($1, 'late', 1)`, [id]);
    if (id === 1050) {
      const [row] = await source.query(`SELECT to_char(pg_xact_commit_timestamp(xmin) AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00' AS at FROM orders WHERE id = 1050`);
      target = row.at;
    }
  }
  await source.archiveNow();
  say(`committed orders 1001–1100 one at a time; order 1050 committed at ${target}`);

  const restored = join(work.dir, 'restored');
  say(`restoring to --target-time ${target}`);
  for (const line of (await coffer(['--repo', repo, 'restore', '--to', restored, '--target-time', target])).split('\n')) say(`  ${line}`);
  const copy = await PostgresSandbox.adopt(install, restored, { serverEnv: env });
  clusters.push(copy);
  await copy.start({ archive_mode: 'off' });
  await copy.waitPromoted();
  const [got] = await copy.query(`SELECT count(*)::int AS n, max(id) AS last FROM orders`);
  const [all] = await source.query(`SELECT count(*)::int AS n FROM orders`);
  ok = got.n === 1050 && got.last === 1050;
  say(`restored cluster holds ${got.n} orders (last id ${got.last}); the source holds ${all.n}: ${ok ? 'exactly the rows committed up to the target' : 'NOT what was expected'}`);
  say(await coffer(['--repo', repo, 'check', '--read-data']).then((s) => s.split('\n').pop()));
} finally {
  for (const c of clusters.reverse()) await c.stop().catch(() => undefined);
  // The archiver archive_command started outlives the server: stopped first, it writes its audit record into the
  // repository before the directory goes, not while it is being removed.
  for (const c of clusters) await stopArchiver(c.data);
  await work.cleanup();
  say('cleaned up');
}
process.exitCode = ok ? 0 : 1;
