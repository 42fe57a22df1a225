/** `coffer key list|add|rotate`: the keys that open the repository's data keys. */
import { InvalidArgumentError, LocalKeyProvider, type KeyProvider } from '@coffer/engine';
import { listOption, type CliContext } from '../context.js';
import { KMS_PROVIDER, kmsProvider, localProvider, openStore } from '../repo-options.js';

export function register(ctx: CliContext): void {
  const { program, io, globals, openRepo, openRepoAt, say } = ctx;
  const key = program.command('key').description("manage the keys that open the repository's data keys");

  key
    .command('list')
    .description('data keys and the providers that wrap each (no key material)')
    .option('--json', 'print as JSON')
    .action(async (o: { json?: boolean }) => {
      const repo = await openRepo();
      const rows = repo.keyRing.status();
      if (o.json) return say(JSON.stringify(rows, null, 2));
      for (const r of rows) say(`data key ${r.id}${r.current ? ' (current)' : ''}${r.open ? '' : ' (not opened by the given keys)'}: ${r.wrappedBy.join(', ')}`);
    });

  key
    .command('add')
    .description('wrap every data key with another key too (another region\'s KMS key, or a key file), so it alone opens the repository')
    .option('--kms-key-id <id>', 'the AWS KMS key to add (the repository opens with COFFER_KMS_KEY_ID or any KMS key that wraps it)')
    .option('--new-key-file <file>', 'a local key file to add')
    .action(async (o: { kmsKeyId?: string; newKeyFile?: string }) => {
      // `--kms-key-id` after `key add` names the key to add; commander hands it to the global option of the same name.
      const adding = o.kmsKeyId ?? globals().kmsKeyId;
      if (!adding === !o.newKeyFile) throw new InvalidArgumentError('key add', 'pass exactly one of --kms-key-id or --new-key-file');
      const repo = await openRepoAt(await openStore(globals(), io.env), { ...globals(), kmsKeyId: undefined });
      const provider: KeyProvider = adding ? kmsProvider(adding, io.env) : await LocalKeyProvider.fromKeyFile(o.newKeyFile!);
      const added = await repo.keyRing.addWrapping(provider);
      say(added ? `wrapped data key(s) ${added.keyIds.join(', ')} with ${adding ?? o.newKeyFile} (${added.key})` : `${adding ?? o.newKeyFile} already wraps every data key`);
    });

  key
    .command('rotate')
    .description('start a new data key for new writes, wrapped by every key that wraps the current one; old keys stay for reading, no data is rewritten')
    .option('--also-key-file <file>', 'another key file that wraps the current data key (repeatable): every wrapping must be given for the new key to be wrapped for it', listOption('--also-key-file', 'path'), [] as string[])
    .action(async (o: { alsoKeyFile: string[] }) => {
      const repo = await openRepo();
      // Every local key on hand: the one that opened the repository, the passphrase beside a key file, and the extra files.
      const locals: KeyProvider[] = [];
      const local = await localProvider(globals(), io.env);
      if (local) locals.push(local);
      if (io.env.COFFER_PASSPHRASE && (globals().keyFile ?? io.env.COFFER_KEY_FILE)) locals.push(LocalKeyProvider.fromPassphrase(io.env.COFFER_PASSPHRASE));
      for (const f of o.alsoKeyFile) locals.push(await LocalKeyProvider.fromKeyFile(f));
      const { providers, wrappedBy } = await repo.keyRing.rotationProviders((w) => (w.provider === KMS_PROVIDER ? [kmsProvider(w.keyRef, io.env)] : locals));
      const rotated = await repo.keyRing.rotate(providers);
      say(`data key ${rotated.keyId} is now current, wrapped by ${wrappedBy.join(', ')} (${rotated.key})`);
    });
}
