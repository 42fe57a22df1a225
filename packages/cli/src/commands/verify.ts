/** `coffer verify`: prove PostgreSQL backups recoverable in a sandbox, and the WAL chain complete. */
import { rename, writeFile } from 'node:fs/promises';
import { InvalidArgumentError, SandboxUnavailableError, VerifyFailedError, commandLine, type RecoveryTarget } from '@coffer/engine';
import { COFFER_BIN, daysOption, intOption, stanzaOf, withSandboxCleanup, type CliContext } from '../context.js';
import type { SmokeQuery, VerifyRunOptions } from '@coffer/verify';
import type { Command } from 'commander';

export interface VerifyCliOptions {
  wal?: boolean;
  others: number;
  targetTime?: string;
  targetLsn?: string;
  targetXid?: string;
  targetName?: string;
  smoke: string[];
  smokeQuery: SmokeQuery[];
  smokeDatabase: string;
  rpo?: number;
  pgBin?: string;
  sandbox?: string;
  keepSandbox?: boolean;
  setting: string[];
  report?: string;
  json?: boolean;
  record: boolean;
  concurrency?: number;
  readData: boolean;
  readDataDays: number;
  readDataSample: number;
  pitrWindow?: number;
}

/** A smoke query: any SQL, but not an empty one, nor one with a NUL (which no server takes). */
function smokeOption(value: string, previous: string[]): string[] {
  if (value.trim() === '' || value.includes('\0')) throw new InvalidArgumentError('--smoke', 'expected an SQL query whose first value is true');
  return [...previous, value];
}

/** A smoke query with its database and expected value, as JSON (the form a policy file's `verification.smoke` gives). */
function smokeQueryOption(value: string, previous: SmokeQuery[]): SmokeQuery[] {
  const wrong = () => new InvalidArgumentError('--smoke-query', `expected JSON such as {"sql": "SELECT count(*) FROM orders", "database": "shop", "expect": {"min": 1}}, got ${JSON.stringify(value.slice(0, 200))}`);
  let q: unknown;
  try {
    q = JSON.parse(value);
  } catch {
    throw wrong();
  }
  const o = q as Record<string, unknown>;
  const e = o?.expect as Record<string, unknown> | undefined;
  const known = (x: object, keys: string[]) => Object.keys(x).every((k) => keys.includes(k));
  const ok =
    typeof q === 'object' && q !== null && !Array.isArray(q) && known(o, ['sql', 'database', 'expect']) &&
    typeof o.sql === 'string' && o.sql.trim() !== '' && !o.sql.includes('\0') &&
    (o.database === undefined || (typeof o.database === 'string' && o.database !== '')) &&
    (e === undefined || (typeof e === 'object' && e !== null && known(e, ['equals', 'min', 'max']) && ['string', 'number', 'boolean', 'undefined'].includes(typeof e.equals) && ['number', 'undefined'].includes(typeof e.min) && ['number', 'undefined'].includes(typeof e.max)));
  if (!ok) throw wrong();
  return [...previous, q as SmokeQuery];
}

/** A percentage, fractions allowed. */
function percentOption(name: string) {
  return (value: string): number => {
    const n = Number(value);
    if (value.trim() === '' || !Number.isFinite(n) || n < 0 || n > 100) throw new InvalidArgumentError(name, `expected a percentage from 0 to 100, got ${JSON.stringify(value)}`);
    return n;
  };
}

/** A server setting, name=value. */
function settingOption(value: string, previous: string[]): string[] {
  const eq = value.indexOf('=');
  if (eq <= 0 || !/^[a-z_][a-z0-9_.]*$/i.test(value.slice(0, eq)) || value.includes('\0')) throw new InvalidArgumentError('--setting', `${JSON.stringify(value)} is not name=value`);
  return [...previous, value];
}

function parseSettings(list: readonly string[]): Record<string, string> {
  return Object.fromEntries(list.map((item) => [item.slice(0, item.indexOf('=')), item.slice(item.indexOf('=') + 1)]));
}

/** The options `verify` and `drill verify` share. */
export function withVerifyOptions(cmd: Command): Command {
  return cmd
    .option('--others <n>', 'besides the newest, how many backups to verify, least recently verified first', intOption('--others', 0, 1000), 1)
    .option('--target-time <time>', 'recover up to this time (default: the end of the archive)')
    .option('--target-lsn <lsn>', 'recover up to this LSN')
    .option('--target-xid <xid>', 'recover up to this transaction')
    .option('--target-name <name>', 'recover up to this restore point')
    .option('--smoke <sql>', 'a query the recovered cluster must answer with true as its first value, e.g. "SELECT count(*) >= 1000 FROM orders" (repeatable)', smokeOption, [] as string[])
    .option('--smoke-database <db>', 'database the --smoke queries run in', 'postgres')
    .option('--smoke-query <json>', 'a smoke query with its database and expected first value, as JSON: {"sql": "…", "database": "shop", "expect": {"min": 1}} (expect: equals, min, max; without it the value must be true; repeatable)', smokeQueryOption, [] as SmokeQuery[])
    .option('--pitr-window <days>', "the PITR window retention keeps (as given to expire): WAL it removed before the window is not a gap, and backups older than it recover up to where that WAL begins (default: every gap is a failure)", daysOption('--pitr-window'))
    .option('--pg-bin <dir>', "PostgreSQL server binaries of the backup's major version (default: found on this machine)")
    .option('--sandbox <dir>', 'parent directory of the sandbox (default: the temp directory)')
    .option('--keep-sandbox', 'keep the sandbox directory afterwards (the server is stopped either way)')
    .option('--setting <name=value>', 'a server setting for the sandbox (repeatable), e.g. shared_buffers=1GB', settingOption, [] as string[])
    .option('--no-record', 'do not write verification records (nor the pack ledger) into the repository')
    .option('--read-data-days <n>', 'read whole every pack not proved in the last N days (new ones among them)', intOption('--read-data-days', 0, 3650), 30)
    .option('--read-data-sample <percent>', 'and this percentage of the other packs, at random', percentOption('--read-data-sample'), 2)
    .option('--no-read-data', 'read no packs whole (the sandbox restores still read what they restore)')
    .option('--concurrency <n>', 'pack requests in flight while restoring', intOption('--concurrency', 1, 256))
    .option('--json', 'print the report as JSON');
}

/** What the shared options ask of `verifyRun` (the sandbox's callback aside). */
export async function verifyRunOptions(ctx: CliContext, selectors: string[], o: VerifyCliOptions): Promise<Omit<VerifyRunOptions, 'onSandbox'>> {
  const { io, globals } = ctx;
  const targets = [o.targetTime, o.targetLsn, o.targetXid, o.targetName].filter((t) => t !== undefined);
  if (targets.length > 1) throw new InvalidArgumentError('--target-*', 'give at most one recovery target');
  const settings = parseSettings(o.setting);
  const { postgresAt } = await import('@coffer/verify');
  const install = o.pgBin !== undefined ? postgresAt(o.pgBin) : undefined;
  if (o.pgBin !== undefined && !install) throw new SandboxUnavailableError(`--pg-bin ${o.pgBin} holds no postgres binary that runs`);
  const target: Pick<RecoveryTarget, 'time' | 'lsn' | 'xid' | 'name'> = {
    ...(o.targetTime !== undefined ? { time: o.targetTime } : {}),
    ...(o.targetLsn !== undefined ? { lsn: o.targetLsn } : {}),
    ...(o.targetXid !== undefined ? { xid: o.targetXid } : {}),
    ...(o.targetName !== undefined ? { name: o.targetName } : {}),
  };
  return {
    stanza: stanzaOf(globals(), io.env),
    ...(selectors.length > 0 ? { backups: selectors } : {}),
    others: o.others,
    ...(o.pitrWindow !== undefined ? { pitrFrom: new Date(Date.now() - o.pitrWindow * 86_400_000) } : {}),
    ...(o.wal ? { walOnly: true } : {}),
    readData: o.readData ? { maxAgeDays: o.readDataDays, samplePercent: o.readDataSample } : false,
    ...(targets.length > 0 ? { target } : {}),
    // The sandbox asks this process for WAL over a socket: it holds no repository credentials and reaches no network.
    restoreCommand: (socket) => commandLine([process.execPath, COFFER_BIN, 'wal-fetch', '--socket', socket, '%f', '%p']),
    ...(install ? { install } : {}),
    ...(o.sandbox !== undefined ? { sandboxParent: o.sandbox } : {}),
    smoke: [...o.smoke.map((sql) => ({ sql, database: o.smokeDatabase })), ...o.smokeQuery],
    ...(o.rpo !== undefined ? { rpoSeconds: o.rpo } : {}),
    settings,
    ...(o.keepSandbox ? { keep: true } : {}),
    record: o.record,
    ...(o.concurrency ? { concurrency: o.concurrency } : {}),
    onPhase: (phase) => {
      if (!globals().quiet && !o.json) io.stderr.write(`coffer: verify: ${phase}\n`);
    },
  };
}

export function register(ctx: CliContext): void {
  const { program, openRepo, say, report: figures } = ctx;
  withVerifyOptions(
    program
      .command('verify [backups...]')
      .description('prove PostgreSQL backups recoverable: restore each into a sandbox with a network of its own, recover with WAL from the repository, start the server, run amcheck, page checksums and smoke queries, time every phase; and verify the WAL chain. Default: the newest backup and the one verified least recently')
      .option('--wal', 'verify only the WAL chain (no sandbox)')
      .option('--rpo <seconds>', 'the newest replayed commit must be at most this old (at the target time, or when the run started)', intOption('--rpo', 0, 10 * 365 * 86400))
      .option('--report <file>', 'also write the report as markdown to FILE'),
  ).action(async (selectors: string[], o: VerifyCliOptions) => {
    const options = await verifyRunOptions(ctx, selectors, o);
    const repo = await openRepo();
    const { verifyRun, removeSandbox, renderVerifyMarkdown, renderVerifySummary } = await import('@coffer/verify');
    // Stopped by a signal, the run stops its sandbox server and removes the sandbox before it goes.
    const report = await withSandboxCleanup('verify', removeSandbox, (onSandbox) => verifyRun(repo, { ...options, onSandbox }));
    figures({
      verify_ok: report.ok ? 1 : 0,
      verify_failures: report.failures.length,
      verify_read_bytes: report.readData?.bytesRead ?? 0,
      ...(report.backups[0] ? { verify_rto_seconds: report.backups[0].rtoSeconds } : {}),
    });
    if (o.report !== undefined) {
      const tmp = `${o.report}.coffer-tmp`;
      await writeFile(tmp, renderVerifyMarkdown(report));
      await rename(tmp, o.report);
    }
    say(o.json ? JSON.stringify(report, null, 2) : renderVerifySummary(report));
    if (!report.ok) throw new VerifyFailedError(`stanza ${report.stanza}`, report.failures);
  });
}
