/**
 * The comparison as markdown tables and SVG plots (Vega-Lite, rendered
 * headless to SVG): stored bytes over the days per tool, backup and restore
 * throughput, and what each chunker stores per day.
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as vega from 'vega';
import { compile, type TopLevelSpec } from 'vega-lite';
import { fmt, table } from '../measure.js';
import type { CompareFigures, ToolFigures, WorkloadFigures } from './compare.js';
import { BASELINE_PREFIX } from './tools.js';

const MB = 1e6;
const mean = (xs: number[]) => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : NaN);
const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
const num = (n: number | undefined, digits = 1) => (n === undefined || !Number.isFinite(n) ? '–' : fmt(n, digits));

/** What one tool did on one workload, reduced to the report's figures. */
export interface ToolSummary {
  tool: string;
  firstBackupS: number;
  firstBackupMBps: number;
  dailyBackupS: number;
  dailyBackupMBps: number;
  peakRssMiB: number | undefined;
  storedFirstMB: number;
  storedPerDayMB: number;
  restoreS: number | undefined;
  restoreMBps: number | undefined;
  restoreRssMiB: number | undefined;
  error?: string;
}

export function summarise(w: WorkloadFigures, t: ToolFigures): ToolSummary {
  const days = t.days;
  const first = days[0];
  const later = days.slice(1);
  const isWal = w.name.endsWith('WAL');
  const firstBytes = w.logicalBytes[first?.day ?? 0] ?? 0;
  const laterBytes = later.map((d) => w.logicalBytes[d.day] ?? 0);
  const growth = days.map((d, i) => d.storedBytes - (i > 0 ? days[i - 1]!.storedBytes : 0));
  const lastBytes = w.logicalBytes[w.logicalBytes.length - 1] ?? 0;
  return {
    tool: t.tool,
    firstBackupS: (first?.backup.ms ?? NaN) / 1000,
    firstBackupMBps: firstBytes / MB / ((first?.backup.ms ?? NaN) / 1000),
    dailyBackupS: mean(later.map((d) => d.backup.ms)) / 1000,
    dailyBackupMBps: mean(later.map((d, i) => laterBytes[i]! / MB / (d.backup.ms / 1000))),
    peakRssMiB: Math.max(...days.map((d) => d.backup.maxRssMiB ?? NaN)),
    storedFirstMB: (first?.storedBytes ?? NaN) / MB,
    // For WAL every day is new data: the mean over all archived days.
    storedPerDayMB: mean((isWal ? growth : growth.slice(1)).map((g) => g / MB)),
    restoreS: t.restore ? t.restore.ms / 1000 : undefined,
    restoreMBps: t.restore ? lastBytes / MB / (t.restore.ms / 1000) : undefined,
    restoreRssMiB: t.restore?.maxRssMiB,
    ...(t.error ? { error: t.error } : {}),
  };
}

export interface Verdict {
  workload: string;
  line: string;
  ok: boolean;
}

/** The issue's bar on a PostgreSQL workload: Coffer stores least per day; backups and restore within 1.5× of the fastest. */
export function verdicts(w: WorkloadFigures): Verdict[] {
  // A baseline Coffer is this project's own past: the bar is against the other tools.
  const rows = w.tools.filter((t) => !t.error && !t.tool.startsWith(BASELINE_PREFIX)).map((t) => summarise(w, t));
  const coffer = rows.find((r) => r.tool === 'Coffer');
  if (!coffer) return [{ workload: w.name, line: `${w.name}: Coffer did not run`, ok: false }];
  const others = rows.filter((r) => r !== coffer);
  const out: Verdict[] = [];
  const ratio = (mine: number | undefined, all: (number | undefined)[]) => (mine ?? NaN) / Math.min(...all.map((x) => x ?? Infinity));
  const store = others.map((o) => `${o.tool} ${num(o.storedPerDayMB)}`).join(', ');
  out.push({
    workload: w.name,
    line: `${w.name}: stored per day — Coffer ${num(coffer.storedPerDayMB)} MB; ${store || 'no other tool ran'}`,
    ok: others.length > 0 && others.every((o) => coffer.storedPerDayMB < o.storedPerDayMB),
  });
  for (const [label, pick] of [
    ['first backup', (r: ToolSummary) => r.firstBackupS],
    ['daily backup', (r: ToolSummary) => r.dailyBackupS],
    ['restore', (r: ToolSummary) => r.restoreS],
  ] as const) {
    const r = ratio(pick(coffer), rows.map(pick));
    const fastest = rows.reduce((a, b) => ((pick(b) ?? Infinity) < (pick(a) ?? Infinity) ? b : a));
    out.push({ workload: w.name, line: `${w.name}: ${label} time — Coffer ${num(pick(coffer), 2)} s, ${fmt(r, 2)}× the fastest (${fastest.tool}, ${num(pick(fastest), 2)} s); bar 1.5×`, ok: r <= 1.5 });
  }
  return out;
}

/** p50 / p99 of one archive_command (or restore_command) call, over every call of every day ('' where a tool has no calls: one backup of the files). */
function callPercentiles(t: WorkloadFigures['tools'][number] | undefined, step: 'backup' | 'fetch' = 'backup'): string {
  const calls = (t?.days ?? []).flatMap((d) => d[step]?.callsMs ?? []).sort((a, b) => a - b);
  if (calls.length === 0) return '';
  const at = (q: number) => calls[Math.min(calls.length - 1, Math.ceil(q * calls.length) - 1)]!;
  return `${num(at(0.5), 0)} / ${num(at(0.99), 0)}`;
}

export function workloadMarkdown(w: WorkloadFigures): string {
  const isWal = w.name.endsWith('WAL');
  const rows = w.tools.map((t) => summarise(w, t));
  const parts: string[] = [`### ${w.name}\n\n${w.description}. Logical bytes per day: ${w.logicalBytes.map((b) => fmt(b / MB)).join(' / ')} MB.\n`];
  if (rows.length) {
    const coffer = rows.find((r) => r.tool === 'Coffer');
    const vs = (r: ToolSummary) => (coffer && r !== coffer ? `${fmt(r.storedPerDayMB / coffer.storedPerDayMB, 2)}×` : '');
    const headers = isWal
      ? ['tool', 'archive s (all files of a day)', 'MB/s', 'per call p50 / p99 ms', 'peak RSS MiB', 'stored per day MB', 'vs Coffer']
      : ['tool', 'first backup s', 'MB/s', 'daily backup s', 'MB/s', 'peak RSS MiB', 'stored after day 0 MB', 'stored per day MB', 'vs Coffer', 'restore s', 'MB/s', 'restore RSS MiB'];
    const body = rows.map((r) =>
      r.error && !Number.isFinite(r.firstBackupS)
        ? [r.tool, `failed: ${r.error.slice(0, 120)}`, ...headers.slice(2).map(() => '')]
        : isWal
          ? [r.tool, num(mean([r.firstBackupS, ...(Number.isFinite(r.dailyBackupS) ? [r.dailyBackupS] : [])]), 2), num(mean([r.firstBackupMBps, ...(Number.isFinite(r.dailyBackupMBps) ? [r.dailyBackupMBps] : [])]), 0), callPercentiles(w.tools.find((t) => t.tool === r.tool)), num(r.peakRssMiB, 0), num(r.storedPerDayMB), vs(r)]
          : [r.tool, num(r.firstBackupS, 2), num(r.firstBackupMBps, 0), num(r.dailyBackupS, 2), num(r.dailyBackupMBps, 0), num(r.peakRssMiB, 0), num(r.storedFirstMB), num(r.storedPerDayMB), vs(r), num(r.restoreS, 2), num(r.restoreMBps, 0), num(r.restoreRssMiB, 0)],
    );
    parts.push(table(headers, body), '');
    const fetchers = w.tools.filter((t) => t.days.some((d) => d.fetch));
    if (isWal && fetchers.length) {
      const fetchRows = fetchers.map((t) => {
        const days = t.days.filter((d) => d.fetch && (d.fetch.callsMs?.length ?? 0) > 0);
        const seconds = mean(days.map((d) => d.fetch!.ms / 1000));
        const files = sum(days.map((d) => d.fetch!.callsMs!.length));
        return [t.tool, num(seconds, 2), num(files / sum(days.map((d) => d.fetch!.ms / 1000)), 1), callPercentiles(t, 'fetch'), num(Math.max(...days.map((d) => d.fetch!.maxRssMiB ?? NaN)), 0)];
      });
      parts.push(
        'WAL replay: the same files fetched back as recovery calls restore_command (one call per file, in order, each into pg_wal/RECOVERYXLOG; Coffer as the installed command (\'coffer wal-fetch %f %p\', as the restore_command coffer restore writes calls it) with its defaults — a prefetcher keeping up to 128 MiB spooled ahead, 2 at once, and a spooled file moved into place by the command script without starting Node — pgBackRest with archive-async, process-max 2 and its default 128 MiB queue):\n',
        table(['tool', 'fetch s (all files of a day)', 'files/s', 'per call p50 / p99 ms', 'peak RSS MiB'], fetchRows),
        '',
      );
    }
    const days = Math.max(...w.tools.map((t) => t.days.length));
    parts.push(
      'Repository size after each day (MB):\n',
      table(['tool', ...Array.from({ length: days }, (_, i) => `day ${w.tools[0]?.days[i]?.day ?? i}`)], w.tools.map((t) => [t.tool, ...Array.from({ length: days }, (_, i) => num((t.days[i]?.storedBytes ?? NaN) / MB))])),
      '',
    );
  }
  const verified = w.tools.filter((t) => t.verify);
  if (verified.length) {
    const restores = rows.filter((r) => Number.isFinite(r.restoreS)).map((r) => `${r.tool} ${num(r.restoreS, 2)} s`).join(', ');
    parts.push(
      `Verification: \`coffer verify\` of the latest backup after the restores above — packs read whole (a first run reads them all), the backup restored into a sandbox with a network of its own, recovered with WAL from the repository to the end of the archive, started, then amcheck on every database and page checksums. The measured RTO is plan + restore + start + replay, next to the plain restores above (${restores}), which leave the cluster still to be started and recovered.\n`,
      table(
        ['tool', 'verify s', 'read packs s', 'MB read', 'measured RTO s', 'restore s', 'start s', 'replay s', 'WAL files', 'amcheck s', 'checksums s', 'result'],
        verified.map((t) => {
          const v = t.verify!;
          if ('error' in v) return [t.tool, `failed: ${v.error.slice(0, 120)}`, '', '', '', '', '', '', '', '', '', ''];
          return [t.tool, num(v.ms / 1000, 2), num(v.readDataS, 2), num(v.bytesRead / MB), num(v.rtoS, 2), num(v.phases.restore ?? NaN, 2), num(v.phases.start ?? NaN, 2), num(v.phases.replay ?? NaN, 2), String(v.walFiles), num(v.checks.amcheck ?? NaN, 2), num(v.checks['page-checksums'] ?? NaN, 2), v.ok ? 'passed' : 'FAILED'];
        }),
      ),
      '',
    );
  }
  if (w.missing.length) parts.push(`Not measured: ${w.missing.map((m) => `${m.name} (${m.missing})`).join('; ')}.\n`);
  const chunkRows = w.chunkers.map((c) => {
    const later = c.days.filter((d) => d.day > 0 || isWal);
    const logical = c.days.reduce((n, d) => n + d.logicalBytes, 0);
    const stored = c.days.reduce((n, d) => n + d.storedBytes, 0);
    return [
      c.name,
      isWal ? '' : num((c.days[0]?.storedBytes ?? NaN) / MB),
      num(mean(later.map((d) => d.newBytes / MB))),
      num(mean(later.map((d) => d.storedBytes / MB))),
      num(logical / stored, 1),
      fmt(c.days[0]?.chunks ?? 0),
      fmt(c.uniqueChunks),
      num(c.mbps, 0),
    ];
  });
  parts.push(
    'Chunkers on the same bytes (new chunks compressed with zstd 3 one by one, or in groups where named; no metadata counted):\n',
    table(['chunker', 'day 0 stored MB', 'new MB per day', 'stored MB per day', 'logical / stored, all days', `chunks ${isWal ? 'day 1' : 'day 0'}`, 'unique chunks (index entries)', 'chunk+SHA-256 MB/s, 1 thread'], chunkRows),
    '',
  );
  return parts.join('\n');
}

async function svg(spec: TopLevelSpec): Promise<string> {
  const view = new vega.View(vega.parse(compile(spec).spec), { renderer: 'none' });
  return view.toSVG();
}

/** Writes the plots; returns their file names. */
export async function writePlots(f: CompareFigures, dir: string, suffix: string): Promise<string[]> {
  const stored = f.workloads.flatMap((w) => w.tools.flatMap((t) => t.days.map((d) => ({ workload: w.name, tool: t.tool, day: d.day, MB: d.storedBytes / MB }))));
  const speed = f.workloads
    .filter((w) => !w.name.endsWith('WAL'))
    .flatMap((w) =>
      w.tools
        .filter((t) => !t.error)
        .flatMap((t) => {
          const s = summarise(w, t);
          return [
            { workload: w.name, tool: t.tool, step: 'first backup', 'MB/s': s.firstBackupMBps },
            { workload: w.name, tool: t.tool, step: 'daily backup', 'MB/s': s.dailyBackupMBps },
            { workload: w.name, tool: t.tool, step: 'restore', 'MB/s': s.restoreMBps ?? 0 },
          ];
        }),
    );
  const chunkers = f.workloads.flatMap((w) =>
    w.chunkers.map((c) => ({ workload: w.name, chunker: c.name, 'stored MB per day': mean(c.days.filter((d) => d.day > 0 || w.name.endsWith('WAL')).map((d) => d.storedBytes / MB)) })),
  );
  const files: [string, TopLevelSpec][] = [
    [
      `stored${suffix}.svg`,
      byWorkload("Repository size after each day's backup", stored, { height: 160, mark: { type: 'line', point: true }, encoding: { x: { field: 'day', type: 'ordinal' }, y: { field: 'MB', type: 'quantitative' }, color: { field: 'tool', type: 'nominal' } } }, 'y'),
    ],
    [
      `throughput${suffix}.svg`,
      byWorkload('Backup and restore throughput (MB/s of logical data)', speed, {
        height: 160,
        mark: 'bar',
        encoding: { x: { field: 'tool', type: 'nominal', title: null }, xOffset: { field: 'step' }, y: { field: 'MB/s', type: 'quantitative' }, color: { field: 'step', type: 'nominal' } },
      }),
    ],
    [
      `chunkers${suffix}.svg`,
      byWorkload('Stored per day by chunker (zstd 3, same bytes)', chunkers, { height: 200, mark: 'bar', encoding: { y: { field: 'chunker', type: 'nominal', title: null, sort: null }, x: { field: 'stored MB per day', type: 'quantitative' } } }, 'x'),
    ],
  ];
  for (const [name, spec] of files) await writeFile(join(dir, name), await svg(spec));
  return files.map(([name]) => name);
}

/** One small chart per workload, three to a row; `independent` gives each its own scale on that axis. */
function byWorkload(title: string, values: object[], spec: Record<string, unknown>, independent?: 'x' | 'y'): TopLevelSpec {
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v5.json',
    title,
    data: { values },
    facet: { field: 'workload', type: 'nominal' },
    columns: 3,
    spec: { width: 220, ...spec },
    ...(independent ? { resolve: { scale: { [independent]: 'independent' } } } : {}),
  } as TopLevelSpec;
}

/** Per step, this Coffer's time over the baseline's (`--baseline`); empty without one. */
export function baselineRatios(w: WorkloadFigures): { step: string; coffer: number; baseline: number; ratio: number }[] {
  const rows = w.tools.filter((t) => !t.error).map((t) => summarise(w, t));
  const coffer = rows.find((r) => r.tool === 'Coffer');
  const base = rows.find((r) => r.tool.startsWith(BASELINE_PREFIX));
  if (!coffer || !base) return [];
  const steps: [string, (r: ToolSummary) => number | undefined][] = w.name.endsWith('WAL')
    ? [['first day', (r) => r.firstBackupS], ['daily', (r) => r.dailyBackupS]]
    : [['first backup', (r) => r.firstBackupS], ['daily backup', (r) => r.dailyBackupS], ['restore', (r) => r.restoreS]];
  return steps
    .map(([step, pick]) => ({ step: `${w.name} ${step}`, coffer: pick(coffer) ?? NaN, baseline: pick(base) ?? NaN }))
    .filter((x) => Number.isFinite(x.coffer) && Number.isFinite(x.baseline))
    .map((x) => ({ ...x, ratio: x.coffer / x.baseline }));
}
