/**
 * A repository worked on by real `coffer` processes, any of which a test may
 * kill (SIGKILL) at any moment, with what was acknowledged tracked so that
 * after each step it can be proven still there: `check --read-data` passes,
 * every backup retention keeps is listed and the oldest and newest of them
 * restore exactly as they were taken, the newest archived WAL segments come
 * back byte for byte, and a mirror that finished checks on its own. Shared
 * by the interleaving test and the reliability suite's crash matrix.
 */
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { expect } from 'vitest';
import { coffer, startCoffer, type RunResult } from './cli.js';
import { pseudoRandom, snapshot, type SnapshotEntry } from './tree.js';
import { fakeCluster, segment, segmentName } from './wal.js';

export type Op = 'backup' | 'wal-push' | 'expire' | 'gc' | 'mirror' | 'reencrypt' | 'restore' | 'key-add' | 'key-rotate';

export interface Started {
  done: Promise<RunResult>;
  kill: () => void;
  /** What the test learns from how it ended (the command's result). */
  after: (r: RunResult) => Promise<void>;
}

const SYSID = 7_500_000_000_000_000_001n;
const SEG = 1 << 20;

/** What was acknowledged at some moment: what must still be there after any later crash or power loss. */
export interface Acknowledged {
  backups: { id: string; snap: Map<string, SnapshotEntry> }[];
  segments: number[];
  addedKeys: string[];
}

export class Workbench {
  readonly repo: string;
  readonly mirrorRepo: string;
  /** The re-encrypted copy (`mirror --reencrypt`) and its own key file. */
  readonly reencryptedRepo: string;
  private readonly reencryptedKey: string;
  readonly env: Record<string, string>;
  /** Backups committed and kept, oldest first, with the source as it was when each started. */
  readonly backups: { id: string; snap: Map<string, SnapshotEntry> }[] = [];
  /** Segments archived (acknowledged). */
  readonly segments: number[] = [];
  /** Key files added to the repository (acknowledged): each must open it alone. */
  readonly addedKeys: string[] = [];
  /** Every key file an add was tried with (a killed add may have added it). */
  private readonly triedKeys: string[] = [];
  private nextSegment = 1;
  private version = 0;
  private scratchN = 0;

  private constructor(
    readonly dir: string,
    private readonly src: string,
    private readonly pgdata: string,
    keyFile: string,
    private readonly seed: number,
    /** More environment for the commands that work on the repository (not for the checks of `verify`). */
    private readonly workEnv: Record<string, string>,
  ) {
    this.repo = join(dir, 'repo');
    this.mirrorRepo = join(dir, 'mirror');
    this.reencryptedRepo = join(dir, 'reencrypted');
    this.reencryptedKey = join(dir, 'reencrypted-key');
    this.env = { COFFER_KEY_FILE: keyFile, COFFER_LEASE_TTL: '1' };
  }

  /** A fresh repository in `dir` (packs of 256 KiB, leases of one second), opened with `keyFile`. */
  static async create(dir: string, keyFile: string, seed: number, workEnv: Record<string, string> = {}): Promise<Workbench> {
    await mkdir(dir, { recursive: true });
    const src = join(dir, 'src');
    await mkdir(src);
    const pgdata = await fakeCluster(join(dir, 'pgdata'), SYSID);
    const w = new Workbench(dir, src, pgdata, keyFile, seed, workEnv);
    await writeFile(w.reencryptedKey, randomBytes(32).toString('base64'), { mode: 0o600 });
    expect((await coffer(['--repo', w.repo, 'init', '--pack-size', String(256 * 1024)], { ...w.env, ...workEnv })).status).toBe(0);
    return w;
  }

  private run(args: string[]): { child: { kill: (s: NodeJS.Signals) => boolean }; done: Promise<RunResult> } {
    return startCoffer(['--repo', this.repo, '-q', ...args], { ...this.env, ...this.workEnv });
  }

  private list(repo = this.repo): Promise<Set<string>> {
    return this.listed(repo).then((ids) => new Set(ids));
  }

  /** The repository's backups, oldest first. */
  private async listed(repo = this.repo): Promise<string[]> {
    const r = await coffer(['--repo', repo, 'list', '--json'], this.env);
    return (JSON.parse(r.stdout) as { id: string }[]).map((b) => b.id);
  }

  /** What is acknowledged now (a copy). */
  acknowledged(): Acknowledged {
    return { backups: [...this.backups], segments: [...this.segments], addedKeys: [...this.addedKeys] };
  }

  async start(op: Op, keepMin = 2): Promise<Started> {
    const started = (p: { child: { kill: (s: NodeJS.Signals) => boolean }; done: Promise<RunResult> }, after: (r: RunResult) => Promise<void> = async () => undefined): Started => ({
      done: p.done,
      kill: () => void p.child.kill('SIGKILL'),
      after,
    });
    if (op === 'backup') {
      // Change part of the source: one file rewritten, one added, one kept as it is.
      this.version++;
      await writeFile(join(this.src, 'stable.bin'), pseudoRandom(200_000, this.seed));
      await writeFile(join(this.src, 'changing.bin'), pseudoRandom(150_000, this.seed + this.version));
      await writeFile(join(this.src, `v${this.version}.txt`), `version ${this.version}\n`.repeat(500));
      await rm(join(this.src, `v${this.version - 2}.txt`), { force: true });
      const snap = await snapshot(this.src);
      return started(this.run(['backup', '--path', this.src, '--json']), async (r) => {
        if (r.status === 0) this.backups.push({ id: (JSON.parse(r.stdout) as { id: string }).id, snap });
      });
    }
    if (op === 'wal-push') {
      const n = this.nextSegment++;
      const name = segmentName(n);
      await writeFile(join(this.pgdata, 'pg_wal', name), segment(SYSID, n, SEG));
      return started(this.run(['wal-push', '--ahead', '0', join(this.pgdata, 'pg_wal', name)]), async (r) => void (r.status === 0 && this.segments.push(n)));
    }
    if (op === 'expire') {
      // The rule keeps the newest keepMin of the repository's backups — acknowledged or not: a backup killed
      // after its commit is there though nobody was told, and it may push an acknowledged one out.
      const kept = new Set((await this.listed()).slice(-keepMin));
      return started(this.run(['expire', '--keep-min', String(keepMin), '--json']), async (r) => {
        let gone: Set<string>;
        if (r.status === 0) {
          const report = JSON.parse(r.stdout) as { backups: { id: string; keep: boolean }[] };
          gone = new Set(report.backups.filter((b) => !b.keep).map((b) => b.id));
        } else {
          // Killed part-way: what it removed is what the rule let go; every backup the rule keeps must be there.
          const listed = await this.list();
          gone = new Set(this.backups.filter((b) => !listed.has(b.id) && !kept.has(b.id)).map((b) => b.id));
        }
        for (let i = this.backups.length - 1; i >= 0; i--) if (gone.has(this.backups[i]!.id)) this.backups.splice(i, 1);
      });
    }
    if (op === 'gc') return started(this.run(['gc', '--json']));
    if (op === 'mirror') {
      return started(this.run(['mirror', '--to', this.mirrorRepo]), async (r) => {
        // A finished mirror is a repository of its own that checks.
        if (r.status === 0) {
          const c = await coffer(['--repo', this.mirrorRepo, '-q', 'check', '--read-data'], this.env);
          expect(c.status, `mirror check: ${c.stdout}${c.stderr}`).toBe(0);
        }
      });
    }
    if (op === 'reencrypt') {
      return started(this.run(['mirror', '--reencrypt', '--to', this.reencryptedRepo, '--to-key-file', this.reencryptedKey]), async (r) => {
        // A finished copy opens with its own key alone, checks whole, and holds a backup of each label the source had.
        if (r.status !== 0) return;
        const env = { ...this.env, COFFER_KEY_FILE: this.reencryptedKey };
        const c = await coffer(['--repo', this.reencryptedRepo, '-q', 'check', '--read-data'], env);
        expect(c.status, `re-encrypted copy check: ${c.stdout}${c.stderr}`).toBe(0);
        const report = JSON.parse((await coffer(['--repo', this.reencryptedRepo, 'list', '--json'], env)).stdout) as { label: string }[];
        const copied = new Set(report.map((b) => b.label));
        const source = JSON.parse((await coffer(['--repo', this.repo, 'list', '--json'], this.env)).stdout) as { label: string }[];
        for (const b of source) expect(copied.has(b.label), `re-encrypted copy lacks ${b.label}`).toBe(true);
      });
    }
    if (op === 'key-add') {
      const file = join(this.dir, `added-key-${this.scratchN++}`);
      await writeFile(file, randomBytes(32).toString('base64'), { mode: 0o600 });
      this.triedKeys.push(file);
      return started(this.run(['key', 'add', '--new-key-file', file]), async (r) => void (r.status === 0 && this.addedKeys.push(file)));
    }
    // Rotation must wrap the new key for every key that wraps the current one: every key an add was tried with is given too.
    if (op === 'key-rotate') return started(this.run(['key', 'rotate', ...this.triedKeys.flatMap((f) => ['--also-key-file', f])]));
    // restore: the newest committed backup, into a fresh directory; compared when it finishes.
    const b = this.backups[this.backups.length - 1];
    if (!b) return { done: Promise.resolve({ status: 0, signal: null, stdout: '', stderr: '' }), kill: () => undefined, after: async () => undefined };
    const to = join(this.dir, `restore-${this.scratchN++}`);
    return started(this.run(['restore', b.id, '--to', to]), async (r) => {
      if (r.status === 0) expect(await snapshot(to)).toEqual(b.snap);
      await rm(to, { recursive: true, force: true });
    });
  }

  /**
   * Proves what was acknowledged is still there; `after` names the step for
   * messages. By default in the repository as it is now, with what is
   * acknowledged now; the power-loss test passes an image of it and what was
   * acknowledged before the moment the image stands for.
   */
  async verify(after: string, at: { repo?: string; acked?: Acknowledged } = {}): Promise<void> {
    const repo = at.repo ?? this.repo;
    const acked = at.acked ?? this;
    const check = await coffer(['--repo', repo, '-q', 'check', '--read-data'], this.env);
    expect(check.status, `after ${after}: ${check.stdout}${check.stderr}`).toBe(0);
    // Every backup retention keeps is listed, and the oldest and newest of them restore exactly.
    const ids = await this.list(repo);
    for (const b of acked.backups) expect(ids.has(b.id), `after ${after}: backup ${b.id} is kept`).toBe(true);
    for (const b of new Set([acked.backups[0], acked.backups[acked.backups.length - 1]])) {
      if (!b) continue;
      const to = join(this.dir, `verify-${this.scratchN++}`);
      const r = await coffer(['--repo', repo, '-q', 'restore', b.id, '--to', to], this.env);
      expect(r.status, r.stderr).toBe(0);
      expect(await snapshot(to)).toEqual(b.snap);
      await rm(to, { recursive: true, force: true });
    }
    // Every archived segment (WAL of a system no backup belongs to is never expired) comes back whole.
    for (const n of acked.segments.slice(-2)) {
      const dest = join(this.dir, 'fetched');
      const r = await coffer(['--repo', repo, '-q', 'wal-fetch', '--system-id', SYSID.toString(), segmentName(n), dest], this.env);
      expect(r.status, r.stderr).toBe(0);
      expect((await readFile(dest)).equals(segment(SYSID, n, SEG))).toBe(true);
      await rm(dest);
    }
    // Every key file acknowledged as added opens the repository alone.
    for (const file of acked.addedKeys.slice(-2)) {
      const r = await coffer(['--repo', repo, '--key-file', file, 'list', '--json'], { ...this.env, COFFER_KEY_FILE: undefined });
      expect(r.status, `key ${file}: ${r.stderr}`).toBe(0);
    }
  }
}
