/**
 * `npm run bench`: the engine's figures, then the comparison with
 * pgBackRest, restic and borg, in one run.
 *   --quick           small inputs and fewer repeats (under 5 minutes)
 *   --only SECTION    engine | compare | s3pg | gc | rpo
 *   --tree-gib N      size of the engine's generated tree (default 2)
 *   --scale N         pgbench scale (default 100; quick 20)
 *   --transactions N  pgbench transactions per day (default 80,000; quick 10,000)
 *   --oltp-mb N       size of the OLTP workload (default 1000; quick 120)
 *   --files-mb N      size of the edited file tree (default 1000; quick 120)
 *   --days N          days after the first (default 2)
 *   --workloads LIST  pgbench,oltp,tree (default all)
 *   --seed N          workload seed (default 1)
 *   --s3-scale N      pgbench scale of the PostgreSQL comparison on S3 (default 50; quick 20)
 *   --s3-noise-mb N   incompressible rows beside it (default 300; quick 60)
 *   --gc-chunks N     chunks of the synthetic repository for check, expire and gc (default 50,000,000; quick 2,000,000)
 *   --baseline DIR    a built checkout of another Coffer revision, run beside this one in the comparison
 *                     (before/after in one sitting; results go to compare[-quick]-baseline.*)
 *   --work DIR        scratch directory (default: $TMPDIR/coffer-bench)
 */
import { cpus, release, tmpdir, totalmem } from 'node:os';
import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { compareFigures } from './compare/compare.js';
import { baselineRatios, verdicts, workloadMarkdown, writePlots } from './compare/report.js';
import { fmt, mbps, table } from './measure.js';
import { gcFigures } from './gc.js';
import { pipelineFigures } from './pipeline.js';
import { rpoDrill, syncCommitFigures } from './rpo.js';
import { s3Figures } from './s3.js';
import { S3_STEPS, s3PostgresFigures } from './compare/s3-postgres.js';
import { treeFigures } from './tree.js';

// The engines field states the Node lines we support; the AWS SDK's notice about its own would clutter the report.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

const { values } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    only: { type: 'string' },
    'tree-gib': { type: 'string' },
    scale: { type: 'string' },
    transactions: { type: 'string' },
    'oltp-mb': { type: 'string' },
    'files-mb': { type: 'string' },
    days: { type: 'string' },
    workloads: { type: 'string' },
    seed: { type: 'string' },
    work: { type: 'string' },
    'gc-chunks': { type: 'string' },
    's3-scale': { type: 'string' },
    's3-noise-mb': { type: 'string' },
    baseline: { type: 'string' },
  },
});
const quick = values.quick ?? false;
const treeBytes = Math.round(Number(values['tree-gib'] ?? (quick ? 0.25 : 2)) * 2 ** 30);
const work = values.work ?? join(tmpdir(), 'coffer-bench');
const resultsDir = fileURLToPath(new URL('../results/', import.meta.url));

const only = values.only;
if (only !== undefined && !['engine', 'compare', 's3pg', 'gc', 'rpo'].includes(only)) throw new Error(`--only takes engine, compare, s3pg, gc or rpo, not ${only}`);
const numberFlag = (name: keyof typeof values, fallback: number): number => {
  const raw = values[name];
  const n = raw === undefined ? fallback : Number(raw);
  if (typeof raw === 'boolean' || !Number.isFinite(n) || n <= 0) throw new Error(`--${name} takes a positive number, not ${String(raw)}`);
  return n;
};
const machine = `${cpus()[0]?.model ?? 'unknown CPU'} × ${cpus().length}, ${Math.round(totalmem() / 2 ** 30)} GiB, Node ${process.version}, ${release()}`;
const command = `npm run bench${process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(' ')}` : ''}`;
await mkdir(resultsDir, { recursive: true });
if (only === undefined || only === 'engine') await engineSection();
if (only === undefined || only === 'gc') await gcSection();
if (only === undefined || only === 'compare') await compareSection();
if (only === undefined || only === 's3pg') await s3PostgresSection();
if (only === undefined || only === 'rpo') await rpoSection();
await stopArchivers(work);
await rm(work, { recursive: true, force: true });

/**
 * The archivers Coffer's archive_command started in the WAL steps go before
 * the scratch directory does (one ending while its repository is being
 * removed would write its last audit record into it).
 */
async function stopArchivers(dir: string): Promise<void> {
  const pids = [];
  for (const p of (await readdir('/proc').catch(() => [] as string[])).filter((n) => /^\d+$/.test(n))) {
    const args = (await readFile(`/proc/${p}/cmdline`, 'utf8').catch(() => '')).split('\0');
    if (args.includes('wal-archiver') && args.some((a) => a.startsWith(dir))) pids.push(Number(p));
  }
  for (const pid of pids) process.kill(pid, 'SIGTERM');
  const end = Date.now() + 30_000;
  for (const pid of pids) while (Date.now() < end && (await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')).includes('wal-archiver')) await new Promise((r) => setTimeout(r, 20));
}

async function engineSection(): Promise<void> {
  console.log(`# Coffer engine benchmark\n\n${machine}, ${new Date().toISOString()}\n`);

  const p = await pipelineFigures(quick ? 128 << 20 : 512 << 20, quick ? 2 : 3);
  const pipelineTable = table(
    ['CPU stage (same bytes, in memory)', 'MB/s', 'vs raw chunk+hash'],
    [
      ['raw fastcdc-wasm boundaries, 1 thread', fmt(p.rawCdc), fmt(p.rawCdc / p.rawCdcSha, 2)],
      ['raw SHA-256, 1 thread', fmt(p.rawSha), fmt(p.rawSha / p.rawCdcSha, 2)],
      ['raw fastcdc + SHA-256, 1 thread (our limit)', fmt(p.rawCdcSha), '1.00'],
      ['engine pipeline: chunk → HMAC id → zstd → AES-GCM, 1 thread', fmt(p.pipeline1), fmt(p.pipeline1 / p.rawCdcSha, 2)],
      [`engine pipeline on ${p.threads} worker threads`, fmt(p.pipelineN), fmt(p.pipelineN / p.rawCdcSha, 2)],
    ],
  );
  console.log(`## Pipeline (${fmt(p.bytes / 2 ** 20)} MiB, half random and half text; stored/raw ${fmt(p.storedRatio, 2)})\n\n${pipelineTable}\n`);

  await mkdir(work, { recursive: true });
  const t = await treeFigures(work, treeBytes);
  const row = (name: string, s: { ms: number; maxRssMiB: number }, bytes: number) => [name, fmt(s.ms / 1000, 2), fmt(mbps(bytes, s.ms)), fmt(s.maxRssMiB)];
  const treeTable = table(
    ['step', 'seconds', 'MB/s', 'peak RSS MiB'],
    [row('backup (first)', t.backup, t.bytes), row('backup (unchanged, parent shortcut)', t.secondBackup, t.bytes), row('restore (verified, fsync\'d)', t.restore, t.bytes)],
  );
  console.log(`## Tree of ${fmt(t.bytes / 2 ** 30, 2)} GiB in ${t.files} files (repository ${fmt(t.repositoryBytes / 2 ** 30, 2)} GiB)\n\n${treeTable}\n`);
  const s3 = await s3Figures(work, join(work, 'src'), t.bytes);
  let s3Section: string;
  if ('missing' in s3) {
    s3Section = `## Against S3 (radosgw)\n\nNot measured: ${s3.missing}\n`;
  } else {
    const GiB = 2 ** 30;
    const perGiB = (n: number | undefined) => fmt(((n ?? 0) * GiB) / s3.bytes);
    const ops = (o: Record<string, number> | undefined) => Object.entries(o ?? {}).map(([k, v]) => `${k} ${v}`).join(', ');
    const s3Table = table(
      ['step', 'seconds', 'MB/s', 'requests', 'requests per GiB', 'peak RSS MiB'],
      [
        ['backup (first) to S3', fmt(s3.backup.ms / 1000, 2), fmt(mbps(s3.bytes, s3.backup.ms)), fmt(s3.backup.requests ?? 0), perGiB(s3.backup.requests), fmt(s3.backup.maxRssMiB)],
        ['restore from S3 (verified, fsync\'d)', fmt(s3.restore.ms / 1000, 2), fmt(mbps(s3.bytes, s3.restore.ms)), fmt(s3.restore.requests ?? 0), perGiB(s3.restore.requests), fmt(s3.restore.maxRssMiB)],
      ],
    );
    s3Section = `## Against S3: radosgw on loopback, same tree (${fmt(s3.storedBytes / GiB, 2)} GiB stored)\n\n${s3Table}\n\nBackup requests: ${ops(s3.backup.byOperation)}. Restore requests: ${ops(s3.restore.byOperation)}.\n`;
}
console.log(s3Section);
const verdicts = [
  `pipeline on ${p.threads} threads / raw chunk+hash: ${fmt(p.pipelineN / p.rawCdcSha, 2)} (goal ≥ 0.5)`,
  `peak RSS: backup ${fmt(t.backup.maxRssMiB)} MiB, restore ${fmt(t.restore.maxRssMiB)} MiB (goal < 300 MiB)`,
];
console.log(verdicts.map((v) => `- ${v}`).join('\n'));

const md = `# Engine benchmark\n\n${machine}, ${new Date().toISOString()}, \`npm run bench${quick ? ' -- --quick' : ''}\`\n\n## Pipeline\n\n${pipelineTable}\n\n## Tree of ${fmt(t.bytes / 2 ** 30, 2)} GiB, ${t.files} files\n\n${treeTable}\n\n${s3Section}\n${verdicts.map((v) => `- ${v}`).join('\n')}\n`;
await writeFile(join(resultsDir, quick ? 'engine-quick.md' : 'engine.md'), md);
await writeFile(join(resultsDir, quick ? 'engine-quick.json' : 'engine.json'), JSON.stringify({ machine, pipeline: p, tree: t, s3 }, null, 2) + '\n');
}

async function compareSection(): Promise<void> {
  const started = Date.now();
  const options = {
    work: join(work, 'compare'),
    days: numberFlag('days', 2),
    seed: numberFlag('seed', 1),
    pgbenchScale: numberFlag('scale', quick ? 20 : 100),
    pgbenchTransactions: numberFlag('transactions', quick ? 10_000 : 80_000),
    oltpBytes: numberFlag('oltp-mb', quick ? 120 : 1000) * 1e6,
    treeBytes: numberFlag('files-mb', quick ? 120 : 1000) * 1e6,
    ...(values.workloads ? { workloads: values.workloads.split(',') } : {}),
    ...(values.baseline ? { baseline: values.baseline } : {}),
    log: (line: string) => console.error(`[${((Date.now() - started) / 1000).toFixed(0).padStart(4)} s] ${line}`),
  };
  options.log(`comparing on ${machine}; progress below, the report at the end`);
  const f = await compareFigures(options);
  const suffix = `${quick ? '-quick' : ''}${values.baseline ? '-baseline' : ''}`;
  const plots = await writePlots(f, resultsDir, suffix);
  const versions = Object.entries(f.versions).map(([k, v]) => `${k} ${v}`).join(', ');
  const missing = f.missing.length ? `\n\nNot installed, so not measured: ${f.missing.map((m) => `${m.name} (${m.missing})`).join('; ')}.` : '';
  const settings = [...new Map(f.workloads.flatMap((w) => w.tools.map((t) => [t.tool, t.settings] as const))).entries()].map(([k, v]) => `- ${k}: ${v}`).join('\n');
  const bar = f.workloads.filter((w) => w.name === 'pgbench' || w.name === 'oltp').flatMap(verdicts);
  const md = [
    `# Coffer against pgBackRest, restic and borg`,
    '',
    `${machine}; \`${command}\`; ${new Date().toISOString()}; ${((Date.now() - started) / 60000).toFixed(1)} minutes.`,
    '',
    `Versions: ${versions}.${missing}`,
    '',
    `Parameters: seed ${options.seed}, ${options.days} days after the first; inputs are read once and \`sync\` runs before every timed step; restores are timed with the \`sync\` that makes them durable. Settings:`,
    '',
    settings,
    '',
    '## The bar (issue: least stored per day; backup and restore within 1.5× of the fastest)',
    '',
    ...bar.map((v) => `- ${v.ok ? 'met' : '**not met**'}: ${v.line}`),
    '',
    ...(values.baseline ? baselineMarkdown(f) : []),
    `Plots: ${plots.map((p) => `[${p}](${p})`).join(', ')}.`,
    '',
    '## Workloads',
    '',
    ...f.workloads.map(workloadMarkdown),
  ].join('\n');
  console.log(md);
  await writeFile(join(resultsDir, `compare${suffix}.md`), md + '\n');
  await writeFile(join(resultsDir, `compare${suffix}.json`), JSON.stringify({ machine, command, ...f }, null, 1) + '\n');
}

/** This revision against the baseline, step by step (lower is faster). */
function baselineMarkdown(f: Awaited<ReturnType<typeof compareFigures>>): string[] {
  const rows = f.workloads.flatMap(baselineRatios).map((r) => [r.step, fmt(r.coffer, 2), fmt(r.baseline, 2), fmt(r.ratio, 3)]);
  return ['## Against the baseline', '', table(['step', 'this revision s', 'baseline s', 'ratio'], rows), ''];
}

/** Coffer and pgBackRest backing up, restoring and recovering one cluster on radosgw over TLS. */
async function s3PostgresSection(): Promise<void> {
  const started = Date.now();
  const log = (line: string) => console.error(`[${((Date.now() - started) / 1000).toFixed(0).padStart(4)} s] ${line}`);
  const f = await s3PostgresFigures({
    work,
    scale: numberFlag('s3-scale', quick ? 20 : 50),
    noiseBytes: numberFlag('s3-noise-mb', quick ? 60 : 300) * 1e6,
    transactions: numberFlag('transactions', quick ? 10_000 : 80_000),
    seed: numberFlag('seed', 1),
    log,
  });
  const head = ['# PostgreSQL on S3: Coffer and pgBackRest', '', `${machine}; \`${command}\`; ${new Date().toISOString()}; ${((Date.now() - started) / 60000).toFixed(1)} minutes.`, ''];
  if ('missing' in f) {
    const md = [...head, `Not measured: ${f.missing}`].join('\n');
    console.log(md);
    await writeFile(join(resultsDir, quick ? 's3-postgres-quick.md' : 's3-postgres.md'), md + '\n');
    return;
  }
  const GiB = 2 ** 30;
  const pgbr = f.tools.find((t) => t.tool === 'pgBackRest');
  const rows = f.tools.flatMap((t) =>
    S3_STEPS.flatMap((name) => {
      const st = t.steps[name];
      if (!st) return [];
      const other = pgbr && pgbr !== t ? pgbr.steps[name] : undefined;
      return [[t.tool, name, fmt(st.ms / 1000, 2), other ? fmt(st.ms / other.ms, 2) : '', st.maxRssMiB === undefined ? '' : fmt(st.maxRssMiB), fmt(st.requests), fmt(st.gets), fmt(st.puts), fmt((st.requests * GiB) / f.logicalBytes), other ? fmt(st.requests / Math.max(1, other.requests), 2) : '']];
    }),
  );
  const stepTable = table(['tool', 'step', 'seconds', 'time vs pgBackRest', 'peak RSS MiB', 'requests', 'object GETs', 'object PUTs', 'requests per GiB', 'requests vs pgBackRest'], rows);
  const stored = table(['tool', 'bucket after both backups and the WAL, MB'], f.tools.map((t) => [t.tool, t.storedBytes === undefined ? '' : fmt(t.storedBytes / 1e6, 1)]));
  const coffer = f.tools.find((t) => t.tool === 'Coffer');
  const goal = (name: (typeof S3_STEPS)[number]) => {
    const a = coffer?.steps[name];
    const b = pgbr?.steps[name];
    if (!a || !b) return `- **not measured**: ${name}`;
    const r = a.ms / b.ms;
    return `- ${r <= 0.8 ? 'met' : '**not met**'}: ${name} ${fmt(r, 2)}× pgBackRest's time (goal ≤ 0.8×)`;
  };
  const md = [
    ...head,
    `${f.description}; ${fmt(f.logicalBytes / 1e6)} MB of data files at the full backup, ${f.walFiles} WAL files pushed to each repository before the restores (not timed). radosgw on loopback over TLS (beast ssl_endpoint, the sandbox's own CA, tcp_nodelay), a bucket per tool; requests are radosgw's own count for each step (its performance counters before and after).`,
    '',
    ...f.tools.map((t) => `- ${t.tool} ${t.version}: ${t.settings}${t.error ? ` — **failed**: ${t.error}` : ''}`),
    '',
    '## Goals (issue: on S3, restore and restore plus recovery ≤ 0.8× pgBackRest\'s time)',
    '',
    goal('restore'),
    goal('restore + recovery to a promoted server'),
    '',
    '## Steps',
    '',
    stepTable,
    '',
    stored,
  ].join('\n');
  console.log(md);
  await writeFile(join(resultsDir, quick ? 's3-postgres-quick.md' : 's3-postgres.md'), md + '\n');
  await writeFile(join(resultsDir, quick ? 's3-postgres-quick.json' : 's3-postgres.json'), JSON.stringify({ machine, command, ...f }, null, 1) + '\n');
}

async function gcSection(): Promise<void> {
  const started = Date.now();
  const chunks = numberFlag('gc-chunks', quick ? 2_000_000 : 50_000_000);
  const log = (line: string) => console.error(`[${((Date.now() - started) / 1000).toFixed(0).padStart(4)} s] ${line}`);
  const g = await gcFigures(join(work, 'gc'), chunks, log);
  const MiB = (n: number | undefined) => (n === undefined ? 'n/a' : fmt(n));
  const stepTable = table(
    ['step', 'seconds', 'peak RSS MiB', 'what it did'],
    [
      ['coffer check (the whole repository, before expire)', fmt(g.check.ms / 1000, 2), MiB(g.check.maxRssMiB), `${fmt(g.check.chunksReferenced)} chunks referenced, looked up in ${g.check.passes} pass(es) of its default 64 MiB table; ${g.check.problems} problems`],
      ['coffer expire (hot 14 d, warm 30 d, cold 6 months weekly)', fmt(g.expire.ms / 1000, 2), MiB(g.expire.maxRssMiB), `kept ${g.expire.keptBackups} of ${g.backups} backups, removed ${g.expire.removedBackups}`],
      [
        'coffer gc',
        fmt(g.gc.ms / 1000, 2),
        MiB(g.gc.maxRssMiB),
        `deleted ${fmt(g.gc.deletedPacks)} of ${fmt(g.packs)} packs (${fmt(g.gc.deletedBytes / 2 ** 30, 1)} of ${fmt(g.gc.packBytes / 2 ** 30, 1)} GiB), repacked ${g.gc.repackedPacks}; index objects ${g.gc.indexObjectsBefore} → ${g.gc.indexObjectsAfter}`,
      ],
    ],
  );
  const expectedDead = g.packs - Math.round((g.liveChunks / g.chunks) * g.packs);
  const verdicts = [
    { ok: (g.gc.maxRssMiB ?? Infinity) <= 256, line: `gc peak RSS ${MiB(g.gc.maxRssMiB)} MiB for ${fmt(g.chunks)} chunks (goal ≤ 256 MiB)` },
    { ok: (g.expire.maxRssMiB ?? Infinity) <= 256, line: `expire peak RSS ${MiB(g.expire.maxRssMiB)} MiB (goal ≤ 256 MiB)` },
    { ok: g.check.ok, line: `check found no problems in ${fmt(g.chunks)} chunks, peak RSS ${MiB(g.check.maxRssMiB)} MiB with its 64 MiB table of ids (--memory sets the table; the number of passes follows from it)` },
    { ok: g.gc.deletedPacks === expectedDead, line: `gc deleted ${fmt(g.gc.deletedPacks)} packs; the packs of chunks only expired backups named: ${fmt(expectedDead)}` },
  ];
  const md = [
    '# Check, expire and garbage collection at scale',
    '',
    `${machine}, ${new Date().toISOString()}, \`npm run bench -- --only gc${quick ? ' --quick' : ''}\` (or part of \`npm run bench${quick ? ' -- --quick' : ''}\`)`,
    '',
    `A synthetic repository of ${fmt(g.chunks)} chunks: ${g.backups} daily backups of a files source, each naming ${fmt((2 * g.chunks) / 200)} chunks shared half with the backup before and half with the one after; ${fmt(g.indexObjects)} index objects, ${fmt(g.packs)} packs (sparse stand-ins: neither command reads a pack here), ${fmt(g.metadataBytesBefore / 2 ** 30, 2)} GiB of index objects and manifests (${fmt(g.metadataBytesAfter / 2 ** 30, 2)} GiB after). Generated in ${fmt(g.generateSeconds, 0)} s. Each command runs in a process of its own under GNU time; gc runs with its default filter memory (${fmt(g.gc.filterBytes / 2 ** 20)} MiB here) and its own tuning of the C allocator and of V8's young generation (see packages/cli/src/malloc-tuning.ts).`,
    '',
    stepTable,
    '',
    `Live-chunk filter: ${fmt(g.gc.filterBytes / 2 ** 20, 1)} MiB, expected false-positive rate ${fmt(g.gc.falsePositiveRate * 100, 3)}%; the exact second look went over ${fmt(g.gc.recheckedPacks)} mostly dead packs and found ${fmt(g.gc.falseLiveChunks)} chunks the filter called live that no backup names (so those packs were deleted, not repacked).`,
    '',
    ...verdicts.map((v) => `- ${v.ok ? 'met' : '**not met**'}: ${v.line}`),
  ].join('\n');
  console.log(md);
  await writeFile(join(resultsDir, quick ? 'gc-quick.md' : 'gc.md'), md + '\n');
  await writeFile(join(resultsDir, quick ? 'gc-quick.json' : 'gc.json'), JSON.stringify({ machine, ...g }, null, 2) + '\n');
}

async function rpoSection(): Promise<void> {
  const started = Date.now();
  const log = (line: string) => console.error(`[${((Date.now() - started) / 1000).toFixed(0).padStart(4)} s] ${line}`);
  const sync = await syncCommitFigures(quick ? 5 : 20, 4, log);
  const base = sync[0]!;
  const syncTable = table(
    ['synchronous standby', 'TPS', 'latency ms', 'TPS vs none', 'latency vs none'],
    sync.map((r) => [r.standby, fmt(r.tps), fmt(r.latencyMs, 2), fmt(r.tps / base.tps, 2), fmt(r.latencyMs / base.latencyMs, 2)]),
  );
  const drill = await rpoDrill(!quick, log);
  const drillTable = table(
    ['wal-receive', 'trials', 'commits acknowledged', 'commits/s', 'lost', 'longest lost window s', 'bound: interval + flush p99 s', 'goal'],
    drill.rows.map((r) => [
      r.mode,
      String(r.trials),
      fmt(r.acknowledged),
      fmt(r.commitsPerSecond),
      fmt(r.lost),
      fmt(r.longestWindowSeconds, 3),
      fmt(r.flushIntervalSeconds + r.flushP99Ms / 1000, 3),
      r.mode === 'synchronous' ? (r.lost === 0 ? 'met: 0 lost' : '**not met**') : r.longestWindowSeconds <= 2 ? 'met: ≤ 2 s' : '**not met**',
    ]),
  );
  const md = [
    '# Streaming WAL: the RPO drill and the price of synchronous commit',
    '',
    `${machine}; \`${command}\`; ${new Date().toISOString()}; ${((Date.now() - started) / 60000).toFixed(1)} minutes.`,
    '',
    `## Synchronous commit (pgbench scale 10, 4 clients, ${quick ? 5 : 20} s each, one server, one after another)`,
    '',
    'Coffer as the synchronous standby answers a commit once its WAL is durable in the repository (here a local directory repository: chunks sealed, packs and records written and fsynced); pg_receivewal once it is fsynced into a directory. Name Coffer with another standby (`ANY 1 (standby, coffer)`): as the only one, the repository\'s availability becomes the primary\'s write availability.',
    '',
    syncTable,
    '',
    `## RPO drill (${quick ? 1 : 20} trial(s) each; the primary's host lost at a random moment, the repository restored to its end)`,
    '',
    `The lost window is the time from the first acknowledged commit the restore lacks to the loss. Its bound is the flush interval plus the receiver's p99 flush time (worst trial); the goal at the default 1 s interval is ≤ 2 s asynchronous, 0 commits lost synchronous.${drill.passed ? '' : ' **The drill failed: see the log.**'}`,
    '',
    drillTable,
    '',
  ].join('\n');
  console.log(md);
  await writeFile(join(resultsDir, quick ? 'rpo-quick.md' : 'rpo.md'), md);
  await writeFile(join(resultsDir, quick ? 'rpo-quick.json' : 'rpo.json'), JSON.stringify({ machine, command, sync, drill }, null, 2) + '\n');
}
