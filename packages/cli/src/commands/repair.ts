/** `coffer repair`: a lost config rebuilt; index entries of lost packs dropped, sources stored again, what stays lost reported. */
import { CONFIG_KEY, displayPath, repairRepository, Repository } from '@coffer/engine';
import { CommandExit, listOption, type CliContext } from '../context.js';
import { EXIT_REPAIR_INCOMPLETE } from '../exit-codes.js';
import { keyProviders, mirrorStoreAt, openStore } from '../repo-options.js';

export function register(ctx: CliContext): void {
  const { program, io, globals, openRepoAt, say } = ctx;
  program
    .command('repair')
    .description(
      'put right what can be: rebuild a lost config from its authenticated copy under keys/, take lost packs out of the index (so backups store their chunks again), back up --path sources again, and report backups that cannot be restored in full (exit 27)',
    )
    .option('--read-data', 'read every pack: damaged ones count as lost too')
    .option('--path <dir>', 'a source to back up again (no parent), storing the chunks it still holds (repeatable)', listOption('--path', 'path'), [] as string[])
    .option('--from <path|url>', 'a mirror of this repository (another region): packs missing or damaged here are copied back from it, each checked against its SHA-256, before any is given up as lost (its S3 endpoint and credentials: COFFER_TO_AWS_* as for mirror --to)')
    .option('--json', 'print the report as JSON')
    .action(async (o: { readData?: boolean; path: string[]; from?: string; json?: boolean }) => {
      const store = await openStore(globals(), io.env);
      const notes: string[] = [];
      let repo: Repository;
      if (!(await store.head(CONFIG_KEY))) {
        const warn = (line: string) => io.stderr.write(`coffer: warning: ${line}\n`);
        const recovered = await Repository.recoverConfig(store, await keyProviders(globals(), io.env, warn), { onWarning: warn });
        repo = recovered.repo;
        notes.push(`rebuilt the config of repository ${repo.config.repositoryId} at ${repo.location} from its authenticated copy ${recovered.from}`);
      } else {
        repo = await openRepoAt(store);
        const written = await repo.ensureConfigCopy();
        if (written) notes.push(`wrote an authenticated copy of the config: ${written}`);
      }
      const progress = globals().quiet || o.json ? undefined : (m: string) => io.stderr.write(`coffer: ${m}\n`);
      const from = o.from ? await mirrorStoreAt(o.from, globals(), io.env) : undefined;
      const report = await repairRepository(repo, { ...(o.readData ? { readData: true } : {}), sources: o.path, ...(from ? { from } : {}), ...(progress ? { onProgress: progress } : {}) });
      const damaged = report.incomplete.length > 0 || report.lostWal.length > 0;
      if (o.json) say(JSON.stringify({ notes, ...report }, null, 2));
      else {
        for (const n of notes) say(n);
        for (const k of report.unhidden) say(`made current again (it was hidden by a delete marker): ${k}`);
        if (report.putBack.length > 0) say(`${report.putBack.length} pack(s) put back whole from ${from!.properties.location}: ${report.putBack.join(', ')}`);
        if (report.lostPacks.length > 0) say(`${report.lostPacks.length} lost pack(s) taken out of ${report.indexesRewritten} index object(s): ${report.lostPacks.join(', ')}`);
        for (const r of report.restored) say(`stored ${r.source} again as backup ${r.key}`);
        for (const b of report.incomplete) say(`cannot be restored in full: ${b.key} (${b.missingChunks} chunk(s) missing; ${b.files.map(displayPath).join(', ')})`);
        for (const w of report.lostWal) say(`WAL lost: ${w}`);
        if (!damaged) say(report.lostPacks.length > 0 || report.putBack.length > 0 || report.unhidden.length > 0 || notes.length > 0 ? 'every backup can be restored in full' : 'nothing to repair: every backup can be restored in full');
      }
      if (damaged) {
        throw new CommandExit(
          EXIT_REPAIR_INCOMPLETE,
          `${report.incomplete.length} backup(s) cannot be restored in full${report.lostWal.length ? ` and ${report.lostWal.length} WAL file(s) are lost` : ''}; new backups store their chunks afresh (back up the sources again, or pass --path, and run repair again to see what remains)`,
        );
      }
    });
}
