/**
 * Writing and checking the audit trail (format in `format/audit-record.ts`).
 * `AuditLog` is one process's chain; `readAuditTrail` reads every chain,
 * proves each record authentic, and reports what is missing or altered: a
 * number skipped in a chain, a record whose predecessor's hash differs, a
 * record another names that is not there, a backup whose audit record is not.
 */
import { createHash, randomBytes } from 'node:crypto';
import { hostname, userInfo } from 'node:os';
import { CofferError } from '../errors.js';
import { AUDIT_MAGIC, AUDIT_PREFIX, auditKey, auditRecordSchema, newChainId, parseAuditKey, type AuditRecord, type AuditValue } from '../format/audit-record.js';
import type { AuditAnchor } from '../format/manifest.js';
import type { Repository } from './repository.js';
import { openJson, sealJson } from './sealed-records.js';

export interface AuditEntry {
  command: string;
  result: 'ok' | 'failed';
  exitStatus: number;
  details: Record<string, AuditValue>;
  error?: string;
}

function whoAmI(): string {
  try {
    return userInfo().username;
  } catch {
    return String(process.getuid?.() ?? 'unknown');
  }
}

const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

/** One process's chain of audit records. */
export class AuditLog {
  readonly chain: string;
  private seq = 0;
  private prev: string | null = null;
  private link: { repo: Repository; record: Promise<{ key: string; sha256: string } | undefined> } | undefined;

  /** `link`: the first record names the newest record of another chain (a LIST of audit/; WAL pushes go without). */
  constructor(private readonly options: { link?: boolean } = {}) {
    this.chain = newChainId(new Date(), randomBytes(8).toString('hex'));
  }

  /** What a manifest written now names: the record this process appends next. */
  get next(): AuditAnchor {
    return { chain: this.chain, seq: this.seq };
  }

  /**
   * Starts looking for the record the first record will name, while the
   * command works: the record is appended when the command ends, and the
   * lookup (a listing and a read) need not add to its time. `append` waits
   * for it, and meets its failure there.
   */
  prepare(repo: Repository): void {
    if (this.seq !== 0 || this.options.link === false || this.link?.repo === repo) return;
    const record = newestRecord(repo, this.chain);
    record.catch(() => undefined);
    this.link = { repo, record };
  }

  async append(repo: Repository, entry: AuditEntry): Promise<string> {
    if (this.seq === 0) this.prepare(repo);
    const seen = this.seq === 0 && this.link ? await this.link.record : undefined;
    const record: AuditRecord = { format: 1, chain: this.chain, seq: this.seq, prev: this.prev, ...(seen ? { seen } : {}), at: new Date().toISOString(), host: hostname(), user: whoAmI(), ...entry };
    const bytes = sealJson(repo, AUDIT_MAGIC, 'audit', record);
    const key = auditKey(this.chain, this.seq);
    await repo.objects.put(key, bytes);
    this.prev = sha256(bytes);
    this.seq++;
    return key;
  }
}

/**
 * The newest record of the newest chain but `own`, by name (chains are named
 * by their start time). Chains are listed within the hour `own` began, then
 * its day, month and year, and only then all of them: one chain is written
 * per command, so a listing of every chain would grow with the repository's
 * whole history and be paid by every command. A chain named later than that
 * widening reaches (another host's clock ahead by more than the span) is not
 * the one named; any other chain's record serves the link as well.
 */
async function newestRecord(repo: Repository, own: string): Promise<{ key: string; sha256: string } | undefined> {
  for (const span of [11, 8, 6, 4, 0]) {
    let best: { key: string; chain: string; seq: number } | undefined;
    for (const o of await repo.objects.list(AUDIT_PREFIX + own.slice(0, span))) {
      const p = parseAuditKey(o.key);
      if (!p || p.chain === own) continue;
      if (!best || p.chain > best.chain || (p.chain === best.chain && p.seq > best.seq)) best = { key: o.key, ...p };
    }
    if (best) return { key: best.key, sha256: sha256(await repo.objects.get(best.key)) };
  }
  return undefined;
}

export interface AuditTrailReport {
  ok: boolean;
  /** Every record that opened, oldest first. */
  records: (AuditRecord & { key: string })[];
  chains: number;
  /** Gaps, edits and damage, each naming the chain, record or backup. */
  problems: string[];
}

export async function readAuditTrail(repo: Repository): Promise<AuditTrailReport> {
  const problems: string[] = [];
  const byChain = new Map<string, Map<number, string>>();
  for (const o of await repo.objects.list(AUDIT_PREFIX)) {
    const p = parseAuditKey(o.key);
    if (!p) {
      problems.push(`${o.key}: not the name of an audit record`);
      continue;
    }
    let c = byChain.get(p.chain);
    if (!c) byChain.set(p.chain, (c = new Map()));
    c.set(p.seq, o.key);
  }
  const records: (AuditRecord & { key: string })[] = [];
  const hashes = new Map<string, string>();
  for (const [chain, keys] of [...byChain].sort(([a], [b]) => (a < b ? -1 : 1))) {
    const last = Math.max(...keys.keys());
    let prevHash: string | null | undefined = null;
    for (let seq = 0; seq <= last; seq++) {
      const key = keys.get(seq);
      if (!key) {
        problems.push(`chain ${chain}: record ${seq} is missing (a gap: deleted, or never written)`);
        prevHash = undefined;
        continue;
      }
      let bytes: Uint8Array;
      let record: AuditRecord;
      try {
        bytes = await repo.objects.get(key);
        record = openJson(repo, AUDIT_MAGIC, 'audit', 'audit record', key, bytes, auditRecordSchema);
      } catch (e) {
        if (!(e instanceof CofferError)) throw e;
        problems.push(`${key}: ${e.message}`);
        prevHash = undefined;
        continue;
      }
      const hash = sha256(bytes);
      hashes.set(key, hash);
      if (record.chain !== chain || record.seq !== seq) problems.push(`${key}: holds record ${record.seq} of chain ${record.chain}`);
      else if (prevHash !== undefined && record.prev !== prevHash) problems.push(`${key}: does not follow record ${seq - 1} of its chain (its hash differs: one of them was replaced)`);
      prevHash = hash;
      records.push({ ...record, key });
    }
  }
  for (const r of records) {
    if (!r.seen) continue;
    const h = hashes.get(r.seen.key);
    if (h === undefined && !(await repo.objects.head(r.seen.key))) problems.push(`${r.key}: names ${r.seen.key}, which is missing (deleted)`);
    else if (h !== undefined && h !== r.seen.sha256) problems.push(`${r.key}: names ${r.seen.key}, whose hash differs (replaced)`);
  }
  for (const b of await repo.listBackups()) {
    if (!b.audit) continue;
    const key = auditKey(b.audit.chain, b.audit.seq);
    if (!hashes.has(key)) problems.push(`backup ${b.label} (${b.id}): its audit record ${key} is missing`);
  }
  records.sort((a, b) => (a.at < b.at ? -1 : a.at > b.at ? 1 : a.key < b.key ? -1 : 1));
  return { ok: problems.length === 0, records, chains: byChain.size, problems };
}
