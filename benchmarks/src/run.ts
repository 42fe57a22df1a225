/**
 * `npm run bench`: the engine's figures in one run.
 *   --quick           a small tree (256 MiB) and fewer repeats
 *   --tree-gib N      size of the generated tree (default 2)
 *   --work DIR        scratch directory (default: $TMPDIR/coffer-bench)
 */
import { cpus, tmpdir } from 'node:os';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { fmt, mbps, table } from './measure.js';
import { pipelineFigures } from './pipeline.js';
import { s3Figures } from './s3.js';
import { treeFigures } from './tree.js';

// The engines field states the Node lines we support; the AWS SDK's notice about its own would clutter the report.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

const { values } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    'tree-gib': { type: 'string' },
    work: { type: 'string' },
  },
});
const quick = values.quick ?? false;
const treeBytes = Math.round(Number(values['tree-gib'] ?? (quick ? 0.25 : 2)) * 2 ** 30);
const work = values.work ?? join(tmpdir(), 'coffer-bench');
const resultsDir = fileURLToPath(new URL('../results/', import.meta.url));

const machine = `${cpus()[0]?.model ?? 'unknown CPU'} × ${cpus().length}, Node ${process.version}`;
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

await mkdir(resultsDir, { recursive: true });
const md = `# Engine benchmark\n\n${machine}, ${new Date().toISOString()}, \`npm run bench${quick ? ' -- --quick' : ''}\`\n\n## Pipeline\n\n${pipelineTable}\n\n## Tree of ${fmt(t.bytes / 2 ** 30, 2)} GiB, ${t.files} files\n\n${treeTable}\n\n${s3Section}\n${verdicts.map((v) => `- ${v}`).join('\n')}\n`;
await writeFile(join(resultsDir, quick ? 'engine-quick.md' : 'engine.md'), md);
await writeFile(join(resultsDir, quick ? 'engine-quick.json' : 'engine.json'), JSON.stringify({ machine, pipeline: p, tree: t, s3 }, null, 2) + '\n');
await rm(work, { recursive: true, force: true });
