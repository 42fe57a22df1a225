/**
 * Running the tools under comparison: each command under GNU time (peak RSS
 * of the largest process in its tree, as the kernel accounts it), optionally
 * as the PostgreSQL server user, with inputs warmed and `sync` run first.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chown, lstat, mkdtemp, open, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { serverUser } from '@coffer/verify';

export interface StepFigures {
  ms: number;
  /** Peak resident set of the largest process the command ran, MiB; undefined without GNU time. */
  maxRssMiB: number | undefined;
  /** One archive_command call after another: each call's time, ms. */
  callsMs?: number[];
}

export interface RunOptions {
  env?: Record<string, string>;
  /** Run as the PostgreSQL server user (pgBackRest must). */
  asServerUser?: boolean;
  cwd?: string;
}

const GNU_TIME = '/usr/bin/time';
export const haveGnuTime = existsSync(GNU_TIME);

export class CommandError extends Error {
  constructor(cmd: string, args: string[], status: number | null, stderr: string) {
    super(`${cmd} ${args.join(' ')} exited ${status}: ${stderr.trim().split('\n').slice(-8).join('\n')}`);
  }
}

/** Runs a command to completion; throws with its stderr when it fails. */
export async function run(cmd: string, args: string[], opts: RunOptions = {}): Promise<{ stdout: string; stderr: string } & StepFigures> {
  const scratch = await mkdtemp(join(tmpdir(), 'coffer-bench-time-'));
  const timeFile = join(scratch, 'time');
  const user = opts.asServerUser ? serverUser() : undefined;
  if (user) await chown(scratch, user.uid, user.gid);
  const argv = haveGnuTime ? [GNU_TIME, '-f', '%M', '-o', timeFile, cmd, ...args] : [cmd, ...args];
  const t0 = performance.now();
  const result = await new Promise<{ status: number | null; stdout: string; stderr: string }>((resolve, reject) => {
    const child = spawn(argv[0]!, argv.slice(1), {
      ...(user ?? {}),
      cwd: opts.cwd ?? tmpdir(),
      env: { PATH: process.env.PATH, HOME: process.env.HOME, LANG: 'C.UTF-8', ...opts.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (status) => resolve({ status, stdout, stderr }));
  });
  const ms = performance.now() - t0;
  const kib = haveGnuTime ? Number((await readFile(timeFile, 'utf8').catch(() => '')).trim().split('\n').pop()) : NaN;
  await rm(scratch, { recursive: true, force: true });
  if (result.status !== 0) throw new CommandError(cmd, args, result.status, result.stderr);
  return { stdout: result.stdout, stderr: result.stderr, ms, maxRssMiB: Number.isFinite(kib) ? kib / 1024 : undefined };
}

/** The first line a command prints for its version, or undefined when it is not installed. */
export function versionOf(cmd: string, args: string[]): string | undefined {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  if (r.error || r.status !== 0) return undefined;
  return (r.stdout || r.stderr).trim().split('\n')[0];
}

/** Bytes of every regular file under `dir` (what a repository occupies, before file-system overhead). */
export async function treeBytes(dir: string, skip?: (rel: string) => boolean): Promise<number> {
  let total = 0;
  const walk = async (d: string, rel: string): Promise<void> => {
    for (const name of await readdir(d)) {
      const r = rel ? `${rel}/${name}` : name;
      if (skip?.(r)) continue;
      const st = await lstat(join(d, name));
      if (st.isDirectory()) await walk(join(d, name), r);
      else if (st.isFile()) total += st.size;
    }
  };
  await walk(dir, '');
  return total;
}

/** Reads every file under `dir` once, so each tool starts from the same warm page cache. */
export async function warm(dir: string): Promise<void> {
  const buf = Buffer.allocUnsafe(1 << 20);
  const walk = async (d: string): Promise<void> => {
    for (const ent of await readdir(d, { withFileTypes: true })) {
      const p = join(d, ent.name);
      if (ent.isDirectory()) await walk(p);
      else if (ent.isFile()) {
        const fh = await open(p, 'r').catch(() => undefined);
        if (!fh) continue;
        try {
          while ((await fh.read(buf, 0, buf.length, null)).bytesRead > 0);
        } finally {
          await fh.close();
        }
      }
    }
  };
  await walk(dir);
  spawnSync('sync');
}
