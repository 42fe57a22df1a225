/**
 * What every command file shares: the process's streams and environment, the
 * global options, opening the repository they name, and the few helpers that
 * turn options into library arguments.
 */
import type { Command } from 'commander';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { commandLine, DEFAULT_STANZA, InvalidArgumentError, validateStanzaName, type AuditAnchor, type AuditValue, type Repository, type RestoreCommandScope, type ObjectStore } from '@coffer/engine';
import { absoluteLocation, repoLocation as rawRepoLocation, type RepoOptions } from './repo-options.js';

export interface CliIo {
  stdout: NodeJS.WriteStream;
  stderr: NodeJS.WriteStream;
  env: NodeJS.ProcessEnv;
}

export interface GlobalOptions extends RepoOptions {
  quiet?: boolean;
  metricsTextfile?: string;
  stanza?: string;
  repositoryId?: string;
  leaseTtl?: string;
  /** Mirrors the WAL commands write to (and read from) beside the repository. */
  walMirror?: string[];
}

/** Ends a command with an exit status of its own choosing (restore_command speaks to PostgreSQL in statuses). */
export class CommandExit extends Error {
  constructor(
    readonly status: number,
    readonly reason?: string,
  ) {
    super(reason ?? `exit ${status}`);
  }
}

export function intOption(name: string, min: number, max: number) {
  return (value: string): number => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < min || n > max) throw new InvalidArgumentError(name, `expected an integer from ${min} to ${max}, got ${JSON.stringify(value)}`);
    return n;
  };
}

/** A duration in seconds, fractions allowed (`0.2`), from `min` to `max`. */
export function secondsOption(name: string, min: number, max: number) {
  return (value: string): number => {
    const n = /^\d+(\.\d+)?$/.test(value) ? Number(value) : NaN;
    if (!(n >= min && n <= max)) throw new InvalidArgumentError(name, `expected seconds from ${min} to ${max}, got ${JSON.stringify(value)}`);
    return n;
  };
}

/**
 * A repeatable option's collector. Every value must be non-empty; a path or
 * pattern may hold any byte but NUL (which no path can), a name (a tag, a
 * backup selector) no control character and at most 200 characters.
 */
export function listOption(name: string, kind: 'name' | 'path') {
  return (value: string, prev: string[]): string[] => {
    if (value === '') throw new InvalidArgumentError(name, 'expected a value, got an empty one');
    if (kind === 'path' && value.includes('\u0000')) throw new InvalidArgumentError(name, `${JSON.stringify(value)} holds a NUL character, which no path can`);
    if (kind === 'name' && /[\u0000-\u001f\u007f]/.test(value)) throw new InvalidArgumentError(name, `${JSON.stringify(value)} holds a control character`);
    if (kind === 'name' && value.length > 200) throw new InvalidArgumentError(name, `${value.length} characters; at most 200`);
    return [...prev, value];
  };
}

/** A number of days (fractions allowed: 0.5 is twelve hours). */
export function daysOption(name: string) {
  return (value: string): number => {
    const n = Number(value);
    if (value.trim() === '' || !Number.isFinite(n) || n < 0 || n > 36500) throw new InvalidArgumentError(name, `expected a number of days from 0 to 36500, got ${JSON.stringify(value)}`);
    return n;
  };
}

/** This command's own entry point, for restore_command and background prefetch. */
export const COFFER_BIN = fileURLToPath(new URL('../bin/coffer.js', import.meta.url));
/** The `coffer` shell script beside it: archive_command and restore_command call it, for the cases it serves without starting Node. */
export const COFFER_COMMAND = fileURLToPath(new URL('../bin/coffer', import.meta.url));
export const VERSION = (JSON.parse(readFileSync(fileURLToPath(new URL('../package.json', import.meta.url)), 'utf8')) as { version: string }).version;

/** A repeatable NAME=DIR option's collector: each pair is checked as it is given. */
export function dirMapOption(name: string) {
  return (value: string, prev: string[]): string[] => {
    parseDirMap(name, [value]);
    return [...prev, value];
  };
}

export function parseDirMap(option: string, pairs: readonly string[]): Record<string, string> {
  const map: Record<string, string> = {};
  for (const pair of pairs) {
    const eq = pair.indexOf('=');
    if (eq <= 0 || eq === pair.length - 1) throw new InvalidArgumentError(option, `${JSON.stringify(pair)} is not NAME=DIR`);
    if (pair.includes('\u0000')) throw new InvalidArgumentError(option, `${JSON.stringify(pair)} holds a NUL character, which no path can`);
    map[pair.slice(0, eq)] = resolve(pair.slice(eq + 1));
  }
  return map;
}

function repoLocation(g: GlobalOptions, env: NodeJS.ProcessEnv): string {
  return absoluteLocation(rawRepoLocation(g, env));
}

/** The lease time-to-live the global option or COFFER_LEASE_TTL (seconds) sets, as library options. */
export function leaseOptions(g: GlobalOptions, env: NodeJS.ProcessEnv): { leaseTtlMs?: number } {
  const raw = g.leaseTtl ?? env.COFFER_LEASE_TTL;
  if (raw === undefined || raw === '') return {};
  const seconds = Number(raw);
  if (!Number.isFinite(seconds) || seconds < 0.1 || seconds > 86400) throw new InvalidArgumentError('--lease-ttl', `expected seconds from 0.1 to 86400, got ${JSON.stringify(raw)}`);
  return { leaseTtlMs: Math.round(seconds * 1000) };
}

export function stanzaOf(g: GlobalOptions, env: NodeJS.ProcessEnv): string {
  return validateStanzaName(g.stanza ?? env.COFFER_STANZA ?? DEFAULT_STANZA);
}

/**
 * The options that name this repository, its keys and the stanza, for a
 * coffer run by PostgreSQL or in the background; `repositoryId` pins the
 * repository so that a config swapped in later is refused.
 */
export function repoArgs(g: GlobalOptions, env: NodeJS.ProcessEnv, repositoryId?: string): string[] {
  const keyFile = g.keyFile ?? env.COFFER_KEY_FILE;
  const pinned = repositoryId ?? g.repositoryId ?? env.COFFER_REPOSITORY_ID;
  return [
    '--repo',
    repoLocation(g, env),
    '--stanza',
    stanzaOf(g, env),
    ...(pinned ? ['--repository-id', pinned] : []),
    ...(keyFile ? ['--key-file', resolve(keyFile)] : []),
    ...(g.kmsKeyId ? ['--kms-key-id', g.kmsKeyId] : []),
    ...(g.s3Endpoint ? ['--s3-endpoint', g.s3Endpoint] : []),
    ...(g.s3PathStyle === true ? ['--s3-path-style'] : g.s3PathStyle === false ? ['--no-s3-path-style'] : []),
    ...(g.walMirror ?? []).flatMap((m) => ['--wal-mirror', absoluteLocation(m)]),
  ];
}

/**
 * wal-fetch through this same coffer and repository, for the backup's
 * cluster; the key comes from the server's environment or the key file.
 * Through the `coffer` script, which moves a prefetched segment into place
 * without starting Node (most calls of a recovery), told which Node runs the
 * rest: the server's PATH need not have one.
 */
export function defaultRestoreCommand(g: GlobalOptions, env: NodeJS.ProcessEnv, repositoryId: string, scope: RestoreCommandScope): string {
  return commandLine(['/usr/bin/env', `COFFER_NODE=${process.execPath}`, COFFER_COMMAND, ...repoArgs({ ...g, stanza: scope.stanza }, env, repositoryId), 'wal-fetch', '--system-id', scope.systemIdentifier, '%f', '%p']);
}

/**
 * Runs `work` with SIGINT, SIGTERM and SIGHUP handled: stopped by one, the
 * sandbox `work` reported (through its argument) is removed with `remove`,
 * said so, and the process ends with 128 + the signal's number, as a shell
 * reports it. Drill and verify use it.
 */
export async function withSandboxCleanup<T>(command: string, remove: (dir: string) => void, work: (onSandbox: (dir: string) => void) => Promise<T>): Promise<T> {
  let sandbox: string | undefined;
  const stop = (signal: NodeJS.Signals, status: number) => () => {
    if (sandbox) remove(sandbox);
    process.stderr.write(`coffer: ${command} stopped by ${signal}; sandbox removed\n`);
    process.exit(status);
  };
  const handlers: [NodeJS.Signals, () => void][] = [['SIGINT', stop('SIGINT', 130)], ['SIGTERM', stop('SIGTERM', 143)], ['SIGHUP', stop('SIGHUP', 129)]];
  for (const [s, h] of handlers) process.once(s, h);
  try {
    return await work((dir) => (sandbox = dir));
  } finally {
    for (const [s, h] of handlers) process.removeListener(s, h);
  }
}

/** Handed to each command's `register`. */
export interface CliContext {
  program: Command;
  io: CliIo;
  globals: () => GlobalOptions;
  /** The repository the global options name, opened with the keys they give. */
  openRepo: () => Promise<Repository>;
  openRepoAt: (store?: ObjectStore, g?: GlobalOptions) => Promise<Repository>;
  /**
   * The repository with the mirrors `--wal-mirror` names, as one store: WAL
   * is written to all (`writer`), read from the first that holds it.
   */
  openWalRepo: (writer: boolean) => Promise<Repository>;
  say: (line: string) => void;
  /** Figures of this run for its metrics (`--metrics-textfile`): name without the `coffer_` prefix → value. */
  report: (figures: Readonly<Record<string, number>>) => void;
  /** Facts for this run's audit record (backup ids, segment names; never a secret). */
  audit: (details: Readonly<Record<string, AuditValue>>) => void;
  /** The audit record this run will append (a backup names it in its manifest). */
  auditAnchor: () => AuditAnchor;
  /** The repository this run's audit record goes to, instead of the one it opened first (init: made, not opened; mirror: the destination). */
  adopt: (repo: Repository) => void;
}
