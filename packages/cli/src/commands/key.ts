/** `coffer key list|add|remove|rotate`: the keys that open the repository's data keys. */
import { InvalidArgumentError, LocalKeyProvider, type KeyProvider, type WrappedKey } from '@coffer/engine';
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
      say(added ? `wrapped data key(s) ${added.keyIds.join(', ')} with ${added.wrapping} (${added.key})` : `${adding ?? o.newKeyFile} already wraps every data key`);
    });

  key
    .command('remove')
    .description('take a key off (a leaked passphrase or key file, a retired KMS key): it no longer opens the repository; open with a key that stays, then run key rotate so new writes use a data key it never wrapped')
    .option('--kms-key-id <id>', 'the AWS KMS key to take off')
    .option('--old-key-file <file>', 'the key file to take off')
    .option('--old-passphrase', 'take off the passphrase in the environment variable COFFER_OLD_PASSPHRASE')
    .action(async (o: { kmsKeyId?: string; oldKeyFile?: string; oldPassphrase?: boolean }) => {
      // As with `key add`, commander hands `--kms-key-id` after the subcommand to the global option.
      const kms = o.kmsKeyId ?? globals().kmsKeyId;
      if ([kms, o.oldKeyFile, o.oldPassphrase].filter(Boolean).length !== 1) throw new InvalidArgumentError('key remove', 'pass exactly one of --kms-key-id, --old-key-file or --old-passphrase');
      const passphrase = io.env.COFFER_OLD_PASSPHRASE;
      if (o.oldPassphrase && !passphrase) throw new InvalidArgumentError('--old-passphrase', 'set the passphrase to take off in COFFER_OLD_PASSPHRASE (never on the command line)');
      const repo = await openRepoAt(await openStore(globals(), io.env), { ...globals(), kmsKeyId: undefined });
      const what = kms ?? o.oldKeyFile ?? 'the old passphrase';
      const old = kms ? undefined : o.oldKeyFile ? await LocalKeyProvider.fromKeyFile(o.oldKeyFile) : LocalKeyProvider.fromPassphrase(passphrase!);
      const isTarget = async (w: WrappedKey) => (kms ? w.provider === KMS_PROVIDER && (w.keyRef === kms || w.keyRef.endsWith(`/${kms}`) || w.keyRef.endsWith(`:${kms}`)) : await repo.keyRing.isOpenedBy(old!, w));
      const removed = await repo.keyRing.removeWrappings(isTarget, what);
      say(`took ${removed.removed.join(', ')} off data key(s) ${removed.keyIds.join(', ')} (${removed.key}); now run 'coffer key rotate' so new writes use a data key it never wrapped`);
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
