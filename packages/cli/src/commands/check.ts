/** `coffer check`: every reference resolves; with --read-data every chunk decrypts and matches its id. */
import { checkRepository, CofferError, DEFAULT_CHECK_MEMORY, CorruptObjectError, MissingObjectError, type CheckReport } from '@coffer/engine';
import { intOption, type CliContext } from '../context.js';

export function register(ctx: CliContext): void {
  const { program, openRepo, say, report: figures } = ctx;
  program
    .command('check')
    .description('verify that every referenced object exists; with --read-data, decrypt and verify every chunk')
    .option('--read-data', 'read and verify all pack data')
    .option('--memory <MiB>', `memory for the table of chunk ids (default ${DEFAULT_CHECK_MEMORY / 1024 / 1024}): an index larger than it is checked in more passes`, intOption('--memory', 1, 65536))
    .option('--json', 'print the report as JSON')
    .action(async (o: { readData?: boolean; memory?: number; json?: boolean }) => {
      const repo = await openRepo();
      const report = await checkRepository(repo, { readData: !!o.readData, ...(o.memory !== undefined ? { memoryBytes: o.memory * 1024 * 1024 } : {}) });
      figures({ check_problems: report.problems.length });
      if (o.json) say(JSON.stringify({ ...report, problems: report.problems.map((p) => ({ code: p.code, message: p.message, key: (p as { key?: string }).key })) }, null, 2));
      else printCheck(report, say);
      if (!report.ok) throw pickCheckError(report);
    });
}


function printCheck(r: CheckReport, say: (s: string) => void): void {
  say(`${r.backups} backups, ${r.indexes} indexes, ${r.packs} packs, ${r.chunksReferenced} chunks referenced${r.chunksVerified ? `, ${r.chunksVerified} chunks verified` : ''}${r.passes > 1 ? ` (${r.passes} passes within --memory)` : ''}`);
  if (r.unindexedPacks) say(`${r.unindexedPacks} pack(s) not indexed (left by an interrupted backup; reclaimed by garbage collection)`);
  say(r.ok ? 'no problems found' : `${r.problems.length} problem(s):`);
  for (const p of r.problems) say(`  ${p.code}: ${p.message}`);
  // Dedup trusts the index: until lost packs leave it, new backups would point at them too.
  if (!r.ok) say('coffer repair takes missing or damaged packs out of the index (so the next backups store their chunks again) and lists the backups that cannot be restored in full');
}

/** The most serious problem decides the exit status: corruption, then missing objects. */

function pickCheckError(r: CheckReport): CofferError {
  return r.problems.find((p) => p instanceof CorruptObjectError) ?? r.problems.find((p) => p instanceof MissingObjectError) ?? r.problems[0]!;
}

/** Runs the CLI; resolves to the process exit status. */
