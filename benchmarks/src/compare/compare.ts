/**
 * The comparison: each workload day by day; after each day, every chunker
 * over the same bytes and every installed tool backs up the same state
 * (inputs warmed, `sync` first); after the last day, every tool restores its
 * latest backup (timed with the `sync` that makes it durable).
 */
import { spawnSync } from 'node:child_process';
import { mkdir, rm, stat } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { ChunkerComparison, CHUNKERS, COFFER_CHUNKING, GROUPED_PAGES, listFiles, type ChunkerFigures, type InputFile } from './chunkers.js';
import { warm, type StepFigures } from './proc.js';
import { detectTools, BASELINE_PREFIX, type MissingTool, type Source, type SourceKind, type Tool, type VerifyFigures } from './tools.js';
import { oltpWorkload, pgbenchWorkload, treeWorkload, WalDays, type PgWorkload, type TreeWorkload } from './workloads.js';

export interface CompareOptions {
  work: string;
  days: number;
  seed: number;
  pgbenchScale: number;
  pgbenchTransactions: number;
  oltpBytes: number;
  treeBytes: number;
  /** Workloads to run (default all): pgbench, oltp, tree; each PostgreSQL one brings its WAL. */
  workloads?: string[];
  /** A built checkout of another Coffer revision, run beside this one (before/after in one sitting). */
  baseline?: string;
  log: (line: string) => void;
}

export interface ToolDay {
  day: number;
  backup: StepFigures;
  /** WAL days: the day's files fetched back as recovery's restore_command calls (tools that have one). */
  fetch?: StepFigures;
  /** Repository size after this day's backup. */
  storedBytes: number;
}

export interface ToolFigures {
  tool: string;
  version: string;
  settings: string;
  days: ToolDay[];
  restore?: StepFigures;
  /** Coffer: `coffer verify` of the latest backup (or why it could not run). */
  verify?: VerifyFigures | { error: string };
  error?: string;
}

export interface WorkloadFigures {
  name: string;
  description: string;
  /** Bytes each day's backup covers. */
  logicalBytes: number[];
  chunkers: ChunkerFigures[];
  tools: ToolFigures[];
  missing: MissingTool[];
}

export interface CompareFigures {
  options: Omit<CompareOptions, 'log' | 'work'>;
  versions: Record<string, string>;
  missing: MissingTool[];
  workloads: WorkloadFigures[];
}

const syncNow = () => spawnSync('sync');
const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
const PG_SKIP = (rel: string) => rel.startsWith('pg_wal/') || rel === 'postmaster.pid' || rel === 'postmaster.opts';

class ToolRunner {
  readonly figures: ToolFigures;
  private ready = false;
  constructor(
    readonly tool: Tool,
    private readonly dir: string,
  ) {
    this.figures = { tool: tool.name, version: tool.version, settings: tool.settings, days: [] };
  }

  /** Runs a step unless the tool already failed; a failure is recorded, not thrown, so the others go on. */
  async step(what: string, fn: () => Promise<void>, log: (l: string) => void): Promise<void> {
    if (this.figures.error) return;
    try {
      await fn();
    } catch (e) {
      this.figures.error = `${what}: ${(e as Error).message}`;
      log(`  ${this.tool.name} failed: ${this.figures.error}`);
    }
  }

  async backup(day: number, source: Source, log: (l: string) => void): Promise<void> {
    await this.step(`backup day ${day}`, async () => {
      if (!this.ready) {
        await mkdir(this.dir, { recursive: true });
        await this.tool.init(join(this.dir, 'repo'), source);
        this.ready = true;
      }
      await warm(source.kind === 'postgres' ? source.cluster.data : source.dir);
      // The day's changes and the previous tool's repository reach the disk now, not while this tool is timed.
      syncNow();
      const backup = await this.tool.backup(source);
      this.figures.days.push({ day, backup, storedBytes: await this.tool.storedBytes() });
      log(`  ${this.tool.name}: backup ${(backup.ms / 1000).toFixed(2)} s, repository ${(this.figures.days.at(-1)!.storedBytes / 1e6).toFixed(1)} MB`);
    }, log);
  }

  async wal(day: number, segments: string[], source: Source, log: (l: string) => void): Promise<void> {
    await this.step(`WAL day ${day}`, async () => {
      if (!this.ready) {
        await mkdir(this.dir, { recursive: true });
        await this.tool.init(join(this.dir, 'repo'), source);
        this.ready = true;
      }
      syncNow();
      const backup = await this.tool.walPush(segments);
      const storedBytes = await this.tool.storedBytes();
      syncNow();
      const fetch = this.tool.walFetch ? await this.tool.walFetch(segments.map((s) => basename(s))) : undefined;
      this.figures.days.push({ day, backup, storedBytes, ...(fetch ? { fetch } : {}) });
      log(`  ${this.tool.name}: ${segments.length} WAL files in ${(backup.ms / 1000).toFixed(2)} s${fetch ? `, fetched back in ${(fetch.ms / 1000).toFixed(2)} s` : ''}`);
    }, log);
  }

  async restore(source: Source, log: (l: string) => void): Promise<void> {
    await this.step('restore', async () => {
      const to = join(this.dir, 'restored');
      await rm(to, { recursive: true, force: true });
      syncNow();
      const r = await this.tool.restore(to, source);
      const t0 = performance.now();
      syncNow();
      this.figures.restore = { ms: r.ms + (performance.now() - t0), maxRssMiB: r.maxRssMiB };
      log(`  ${this.tool.name}: restore ${(this.figures.restore.ms / 1000).toFixed(2)} s`);
      await rm(to, { recursive: true, force: true });
    }, log);
  }

  /** `coffer verify` after the restores; a failure is its own figure and leaves the tool's others standing. */
  async verify(archiveDir: string, log: (l: string) => void): Promise<void> {
    if (!this.tool.verify || this.figures.error || this.tool.name.startsWith(BASELINE_PREFIX)) return;
    syncNow();
    try {
      const v = await this.tool.verify(archiveDir);
      this.figures.verify = v;
      log(`  ${this.tool.name}: verify ${(v.ms / 1000).toFixed(2)} s (${v.ok ? 'passed' : 'FAILED'}), measured RTO ${v.rtoS.toFixed(2)} s`);
    } catch (e) {
      this.figures.verify = { error: (e as Error).message.slice(0, 500) };
      log(`  ${this.tool.name}: verify failed: ${this.figures.verify.error}`);
    }
  }
}

function runners(kind: SourceKind, dir: string, baseline: string | undefined): { list: ToolRunner[]; missing: MissingTool[] } {
  const { tools, missing } = detectTools(baseline);
  const list = tools.filter((t) => t.handles(kind)).map((t) => new ToolRunner(t, join(dir, `${t.name.toLowerCase().replace(/ /g, '-')}-${kind}`)));
  return { list, missing };
}

async function pgWorkload(w: PgWorkload, o: CompareOptions): Promise<WorkloadFigures[]> {
  const dir = join(o.work, w.name);
  await rm(dir, { recursive: true, force: true });
  const source: Source = { kind: 'postgres', cluster: w.cluster };
  const data = runners('postgres', dir, o.baseline);
  const walTools = runners('wal', dir, o.baseline);
  const chunkers = new ChunkerComparison([...CHUNKERS, COFFER_CHUNKING, GROUPED_PAGES]);
  const walChunkers = new ChunkerComparison(CHUNKERS);
  const walDays = new WalDays(w.archiveDir);
  const logical: number[] = [];
  const walLogical: number[] = [];
  try {
    for (let day = 0; day <= o.days; day++) {
      o.log(`${w.name}: day ${day}`);
      await w.day(day);
      const files = await listFiles(w.cluster.data, PG_SKIP, true);
      const segments = await walDays.next();
      logical.push(await sizeOf(files));
      await chunkers.day(day, files);
      for (const r of data.list) await r.backup(day, source, o.log);
      // The WAL of the initial load is one bulk copy; the days' WAL is what archiving lives with.
      if (day > 0) {
        const walFiles = segments.map((path) => ({ path, relation: false }));
        walLogical.push(await sizeOf(walFiles));
        await walChunkers.day(day, walFiles);
        for (const r of walTools.list) await r.wal(day, segments, source, o.log);
      }
    }
    for (const r of data.list) await r.restore(source, o.log);
    for (const r of data.list) await r.verify(w.archiveDir, o.log);
  } finally {
    await w.close();
  }
  return [
    { name: w.name, description: w.description, logicalBytes: logical, chunkers: chunkers.figures(), tools: data.list.map((r) => r.figures), missing: data.missing },
    {
      name: `${w.name} WAL`,
      description: `the WAL of the ${w.name} days (for Coffer and pgBackRest, archive_command called per file as PostgreSQL's archiver calls it: oldest first, every file of the day waiting with a .ready note, each success marked .done — Coffer as the installed command ('coffer wal-push %p') with its defaults — the first call starts a wal-archiver that archives each file as it is marked ready, 2 at once, and the calls confirm them — pgBackRest with archive-async and process-max 2; restic and borg back up each day's files at once)`,
      logicalBytes: [0, ...walLogical],
      chunkers: walChunkers.figures(),
      tools: walTools.list.map((r) => r.figures),
      missing: walTools.missing,
    },
  ];
}

async function fileWorkload(w: TreeWorkload, o: CompareOptions): Promise<WorkloadFigures> {
  const dir = join(o.work, w.name);
  await rm(dir, { recursive: true, force: true });
  const source: Source = { kind: 'files', dir: w.dir };
  const tools = runners('files', dir, o.baseline);
  const chunkers = new ChunkerComparison(CHUNKERS);
  const logical: number[] = [];
  try {
    for (let day = 0; day <= o.days; day++) {
      o.log(`${w.name}: day ${day}`);
      await w.day(day);
      const files = await listFiles(w.dir);
      logical.push(await sizeOf(files));
      await chunkers.day(day, files);
      for (const r of tools.list) await r.backup(day, source, o.log);
    }
    for (const r of tools.list) await r.restore(source, o.log);
  } finally {
    await w.close();
  }
  return { name: w.name, description: w.description, logicalBytes: logical, chunkers: chunkers.figures(), tools: tools.list.map((r) => r.figures), missing: tools.missing };
}

async function sizeOf(files: InputFile[]): Promise<number> {
  return sum(await Promise.all(files.map(async (f) => (await stat(f.path)).size)));
}

export async function compareFigures(o: CompareOptions): Promise<CompareFigures> {
  await mkdir(o.work, { recursive: true });
  const { tools, missing } = detectTools(o.baseline);
  const workloads: WorkloadFigures[] = [];
  const wanted = (name: string) => !o.workloads || o.workloads.includes(name);
  if (wanted('pgbench')) workloads.push(...(await pgWorkload(await pgbenchWorkload(o.pgbenchScale, o.pgbenchTransactions, o.seed), o)));
  if (wanted('oltp')) workloads.push(...(await pgWorkload(await oltpWorkload(o.oltpBytes, o.seed), o)));
  if (wanted('tree')) workloads.push(await fileWorkload(await treeWorkload(join(o.work, 'tree-source'), o.treeBytes, o.seed), o));
  const { log: _log, work: _work, ...options } = o;
  return { options, versions: Object.fromEntries(tools.map((t) => [t.name, t.version])), missing, workloads };
}
