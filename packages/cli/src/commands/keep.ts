/** `coffer keep`: mark a backup to be kept whatever retention says (and take the mark off again). */
import { readKeepMarks, setKeepMark } from '@coffer/engine';
import type { CliContext } from '../context.js';

export function register(ctx: CliContext): void {
  const { program, openRepo, say } = ctx;
  program
    .command('keep [backup]')
    .description('mark a backup (latest, id, label or tag) to be kept by expire whatever the retention rules say; --remove takes the mark off; without a backup, list the marks')
    .option('--remove', 'take the keep mark off')
    .option('--note <text>', 'why it is kept (shown in the list)')
    .action(async (selector: string | undefined, o: { remove?: boolean; note?: string }) => {
      const repo = await openRepo();
      if (selector === undefined) {
        for (const m of (await readKeepMarks(repo)).values()) if (m.keep) say(`${m.backup.slice(-64, -52)} ${m.backup}: kept since ${m.at}${m.note ? ` (${m.note})` : ''}`);
        return;
      }
      const key = await repo.findBackupKey(selector);
      const mark = await setKeepMark(repo, key, !o.remove, o.note);
      say(`${key.slice(-64, -52)}: ${mark.keep ? 'marked keep' : 'keep mark removed'}`);
    });
}
