/** `coffer audit`: every audit record of the repository, each chain verified. */
import { CheckFailedError, CofferError, InvalidArgumentError, readAuditTrail, type AuditRecord } from '@coffer/engine';
import { type CliContext } from '../context.js';

function summary(r: AuditRecord): string {
  const d = Object.entries(r.details)
    .slice(0, 8)
    .map(([k, v]) => `${k}=${Array.isArray(v) ? (v.length > 3 ? `${v.slice(0, 3).join(',')},…(${v.length})` : v.join(',')) : String(v)}`)
    .join(' ');
  return `${r.at.slice(0, 19)}Z  ${r.result === 'ok' ? 'ok    ' : `FAILED`} ${r.command.padEnd(12)} ${`${r.user}@${r.host}`.padEnd(24)} ${d}${r.error ? `  — ${r.error.split('\n')[0]}` : ''}`;
}

export function register(ctx: CliContext): void {
  const { program, openRepo, say } = ctx;
  program
    .command('audit')
    .description('list the audit trail (who did what to the repository, when, and how it ended) and verify it: a record deleted, edited or never written is reported; exit 15 then')
    .option('--since <time>', 'list records from this time on (ISO 8601, e.g. 2026-11-30T00:00:00Z); every record is still verified')
    .option('--json', 'print the records and problems as JSON')
    .action(async (o: { since?: string; json?: boolean }) => {
      const since = o.since === undefined ? undefined : Date.parse(o.since);
      if (since !== undefined && Number.isNaN(since)) throw new InvalidArgumentError('--since', `expected a time such as 2026-11-30T00:00:00Z, got ${JSON.stringify(o.since)}`);
      const repo = await openRepo();
      const trail = await readAuditTrail(repo);
      const records = since === undefined ? trail.records : trail.records.filter((r) => Date.parse(r.at) >= since);
      if (o.json) say(JSON.stringify({ ok: trail.ok, chains: trail.chains, records, problems: trail.problems }, null, 2));
      else {
        for (const r of records) say(summary(r));
        say(`${records.length} record(s)${since !== undefined ? ` since ${o.since}` : ''}, ${trail.chains} chain(s): ${trail.ok ? 'every chain verified' : `${trail.problems.length} problem(s)`}`);
        for (const p of trail.problems) say(`  ${p}`);
      }
      if (!trail.ok) throw new CheckFailedError(trail.problems.map((p) => new CofferError('COFFER_CORRUPT_OBJECT', `audit trail: ${p}`)));
    });
}
