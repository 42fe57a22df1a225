/** `coffer repair`: put right what can be put right without the sources — today, a lost config. */
import { CONFIG_KEY, Repository } from '@coffer/engine';
import { type CliContext } from '../context.js';
import { keyProviders, openStore } from '../repo-options.js';

export function register(ctx: CliContext): void {
  const { program, io, globals, openRepoAt, say } = ctx;
  program
    .command('repair')
    .description("rebuild a lost config from its authenticated copy under keys/ (the keys that open the repository are needed); on an intact repository, keep such a copy")
    .action(async () => {
      const store = await openStore(globals(), io.env);
      if (!(await store.head(CONFIG_KEY))) {
        const warn = (line: string) => io.stderr.write(`coffer: warning: ${line}\n`);
        const { repo, from } = await Repository.recoverConfig(store, await keyProviders(globals(), io.env, warn), { onWarning: warn });
        return say(`rebuilt the config of repository ${repo.config.repositoryId} at ${repo.location} from its authenticated copy ${from}`);
      }
      const repo = await openRepoAt(store);
      const written = await repo.ensureConfigCopy();
      say(written ? `wrote an authenticated copy of the config: ${written}` : 'the config and its authenticated copy are in place; nothing to repair');
    });
}

