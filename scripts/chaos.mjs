#!/usr/bin/env node
/**
 * `npm run chaos [-- --long]`: the reliability suite (test/chaos/), then its
 * figures summed into one table, printed and written to
 * benchmarks/results/reliability.md (reliability-long.md for --long).
 * `npm test` runs the same sections at their short size; --long runs them
 * at the size the suite promises (CHAOS_LONG=1 in each section's `sized`).
 */
import { spawnSync } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir, cpus, totalmem } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const long = process.argv.includes('--long');
const root = fileURLToPath(new URL('..', import.meta.url));
const figuresDir = await mkdtemp(join(tmpdir(), 'coffer-chaos-'));
const started = Date.now();
const vitest = spawnSync(process.execPath, [join(root, 'node_modules', 'vitest', 'vitest.mjs'), 'run', 'test/chaos'], {
  cwd: root,
  stdio: 'inherit',
  env: { ...process.env, CHAOS_FIGURES_DIR: figuresDir, CHAOS_LONG: long ? '1' : '0' },
});
const minutes = (Date.now() - started) / 60000;

const COLUMNS = [
  ['trials', 'trials run'],
  ['kills', 'kills'],
  ['powerCuts', 'power cuts'],
  ['storeFaults', 'store faults injected'],
  ['diskCases', 'ENOSPC/permission cases'],
  ['concurrentMinutes', 'concurrent-run minutes'],
  ['fuzzInputs', 'fuzz inputs'],
  ['badCliInputs', 'bad CLI inputs'],
  ['lost', 'acknowledged objects lost'],
  ['untyped', 'untyped errors'],
  ['secrets', 'secrets found'],
];
const sections = [];
for (const f of (await readdir(figuresDir)).sort()) sections.push([f.replace(/\.json$/, ''), JSON.parse(await readFile(join(figuresDir, f), 'utf8'))]);
await rm(figuresDir, { recursive: true, force: true });
const total = Object.fromEntries(COLUMNS.map(([k]) => [k, sections.reduce((n, [, s]) => n + (s[k] ?? 0), 0)]));
const row = (name, s) => `| ${name} | ${COLUMNS.map(([k]) => (s[k] ?? 0).toLocaleString('en-US')).join(' | ')} |`;
const md = [
  `# Reliability suite${long ? ' (long run)' : ''}`,
  '',
  `${cpus()[0]?.model ?? 'unknown CPU'} × ${cpus().length}, ${Math.round(totalmem() / 2 ** 30)} GiB, Node ${process.version}, ${new Date().toISOString()}, \`npm run chaos${long ? ' -- --long' : ''}\`, ${minutes.toFixed(1)} minutes, vitest exit ${vitest.status}.`,
  '',
  `| section | ${COLUMNS.map(([, h]) => h).join(' | ')} |`,
  `|:--|${COLUMNS.map(() => '--:').join('|')}|`,
  ...sections.map(([name, s]) => row(name, s)),
  row('**all**', total),
  '',
  `Goal: the last three columns 0 at every size of run — ${total.lost === 0 && total.untyped === 0 && total.secrets === 0 && vitest.status === 0 ? 'met' : '**not met**'}.`,
  '',
].join('\n');
console.log(`\n${md}`);
await writeFile(join(root, 'benchmarks', 'results', long ? 'reliability-long.md' : 'reliability.md'), md);
process.exit(vitest.status ?? 1);
