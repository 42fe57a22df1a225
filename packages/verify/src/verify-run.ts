/**
 * A verification run, as a nightly job runs it: the WAL chain of the stanza
 * once; the packs due for reading (not proved for a while, new since the
 * last run) and a sample of the rest, read whole; then the newest backup and
 * the retained backups verified least recently (never first), each in its
 * own sandbox. Over nights every retained backup takes its turn; retention
 * never expires the newest that passed.
 */
import { tmpdir } from 'node:os';
import { chooseBackup, DEFAULT_STANZA, readDataIncrementally, readVerifications, verifyWalChain, type IncrementalReadOptions, type IncrementalReadReport, type Repository, type WalChainReport } from '@coffer/engine';
import { removeStaleSandboxes } from './sandbox-removal.js';
import { verifyPostgresBackup, type PostgresVerifyOptions, type PostgresVerifyReport } from './verify-postgres.js';

export interface VerifyRunOptions extends Omit<PostgresVerifyOptions, 'walChain'> {
  /** The start of the PITR window retention keeps: WAL gaps before it are expected (see `verifyWalChain`). */
  pitrFrom?: Date;
  /** Backups to verify (selectors); default: the newest and `others` more, or with a target point, the backup a restore to it would choose. */
  backups?: readonly string[];
  /** Besides the newest, how many retained backups to verify, least recently verified first (default 1). */
  others?: number;
  /** Verify only the WAL chain (no pack reads, no sandbox). */
  walOnly?: boolean;
  /** Which packs to read whole (default: due after 30 days, and a 2% sample); false: none. */
  readData?: IncrementalReadOptions | false;
}

export interface VerifyRunReport {
  ok: boolean;
  stanza: string;
  walChain: WalChainReport;
  /** The packs read whole this run, against all the repository holds. */
  readData?: IncrementalReadReport;
  backups: PostgresVerifyReport[];
  /** Every failure of the run: the chain's gaps and problems, then each backup's. */
  failures: string[];
  /** Sandboxes of earlier runs that were killed outright, stopped and removed before this one began. */
  staleSandboxesRemoved: string[];
}

/** The newest backup of the stanza, then `others` more: never verified first, then the longest ago, older backups before newer on a tie. */
export async function backupsToVerify(repo: Repository, stanza: string, others: number): Promise<string[]> {
  const all = (await repo.listBackups()).filter((b) => b.kind === 'postgres' && (b.stanza ?? DEFAULT_STANZA) === stanza);
  const newest = all[all.length - 1];
  if (!newest) return [];
  const verified = await readVerifications(repo);
  const rest = all.slice(0, -1).map((b, i) => ({ key: b.key, at: verified.get(b.key)?.at ?? '', i }));
  rest.sort((a, b) => (a.at < b.at ? -1 : a.at > b.at ? 1 : a.i - b.i));
  return [newest.key, ...rest.slice(0, Math.max(0, others)).map((r) => r.key)];
}

export function chainFailures(chain: WalChainReport): string[] {
  const label = new Map(chain.backups.map((b) => [b.backup, b.label]));
  const names = (keys: string[]) => keys.map((k) => label.get(k) ?? k).join(', ');
  return [
    ...chain.gaps.filter((g) => !g.expected).map(
      (g) =>
        `wal-chain: ${g.from}…${g.to} (${g.segments} segment${g.segments === 1 ? '' : 's'}) missing` +
        (g.breaks.length ? `; backups that cannot become consistent: ${names(g.breaks)}` : '') +
        (g.limits.length ? `; recovery from ${names(g.limits)} ends before it` : ''),
    ),
    ...chain.problems.map((p) => `wal-chain: ${p}`),
  ];
}

/**
 * Segments just before the newest one may be missing only because they are in flight: `wal-push --ahead`
 * uploads a few at once, and a later one may land first. (Distance in log and segment digits: a gap across a
 * 4 GiB boundary counts at once.)
 */
const IN_FLIGHT_SEGMENTS = 8n;

/**
 * The WAL chain once pushes in flight have landed: gaps among the newest few
 * segments are looked at again, for up to `settleMs`, before they count.
 */
export async function settledWalChain(repo: Repository, stanza: string, pitrFrom?: Date, settleMs = 30_000): Promise<WalChainReport> {
  const until = Date.now() + settleMs;
  for (;;) {
    const chain = await verifyWalChain(repo, { stanza, ...(pitrFrom ? { pitrFrom } : {}) });
    const newest = chain.newest ? BigInt(`0x${chain.newest.slice(8)}`) : undefined;
    const nearHead = chain.gaps.some((g) => !g.expected && newest !== undefined && newest - BigInt(`0x${g.to.slice(8)}`) <= IN_FLIGHT_SEGMENTS);
    if (!nearHead || Date.now() >= until) return chain;
    await new Promise((r) => setTimeout(r, 2000));
  }
}

export async function verifyRun(repo: Repository, options: VerifyRunOptions): Promise<VerifyRunReport> {
  const stanza = options.stanza ?? DEFAULT_STANZA;
  const staleSandboxesRemoved = options.walOnly ? [] : removeStaleSandboxes(options.sandboxParent ?? tmpdir());
  const walChain = await settledWalChain(repo, stanza, options.pitrFrom);
  const report: VerifyRunReport = { ok: false, stanza, walChain, backups: [], failures: chainFailures(walChain), staleSandboxesRemoved };
  if (!options.walOnly && options.readData !== false) {
    report.readData = await readDataIncrementally(repo, { ...options.readData, ...(options.record === false ? { record: false } : {}) });
    report.failures.push(...report.readData.problems.map((p) => `read-data: ${p}`));
  }
  if (!options.walOnly) {
    const t = options.target;
    const aimed = t !== undefined && (t.time ?? t.lsn ?? t.xid ?? t.name) !== undefined;
    // A point in time is reached from one backup: the newest that ended before it (as a restore would choose).
    const selected =
      options.backups && options.backups.length > 0 ? [...options.backups] : aimed ? [(await chooseBackup(repo, t, stanza)).key] : await backupsToVerify(repo, stanza, options.others ?? 1);
    for (const selector of selected) {
      const r = await verifyPostgresBackup(repo, selector, { ...options, walChain });
      report.backups.push(r);
      report.failures.push(...r.failures.map((f) => `${r.label}: ${f}`));
    }
  }
  report.ok = report.failures.length === 0;
  return report;
}
