/** `coffer key-file`: print the content of a new key file. */
import { LocalKeyProvider } from '@coffer/engine';
import { type CliContext } from '../context.js';

export function register(ctx: CliContext): void {
  const { program, io } = ctx;
  program
    .command('key-file')
    .description('print 32 random bytes, base64 — the content of a new key file (redirect it somewhere safe)')
    .action(() => {
      io.stdout.write(LocalKeyProvider.newKeyFileContent());
    });
}
