/** Turns `--repo` and key options (or their environment variables) into a store and key providers. */
import { FileStore, fileStorePath, InvalidArgumentError, LocalKeyProvider, type KeyProvider, type ObjectStore } from '@coffer/engine';

export interface RepoOptions {
  repo?: string;
  keyFile?: string;
}

export function openStore(opts: RepoOptions, env: NodeJS.ProcessEnv): ObjectStore {
  const location = opts.repo ?? env.COFFER_REPO;
  if (!location) throw new InvalidArgumentError('repository', 'pass --repo PATH|file://URL or set COFFER_REPO');
  if (location.startsWith('s3://')) throw new InvalidArgumentError('repository', `${location}: S3 repositories are not supported by this build yet`);
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(location) && !location.startsWith('file://')) {
    throw new InvalidArgumentError('repository', `${location}: unknown scheme (use a path or file://)`);
  }
  return new FileStore(fileStorePath(location));
}

/** The passphrase is read from the environment only: a command-line argument would show in `ps`. */
export async function keyProviders(opts: RepoOptions, env: NodeJS.ProcessEnv): Promise<KeyProvider[]> {
  const keyFile = opts.keyFile ?? env.COFFER_KEY_FILE;
  if (keyFile) return [await LocalKeyProvider.fromKeyFile(keyFile)];
  const passphrase = env.COFFER_PASSPHRASE;
  if (passphrase) return [LocalKeyProvider.fromPassphrase(passphrase)];
  throw new InvalidArgumentError('key', 'set COFFER_PASSPHRASE or pass --key-file FILE (or set COFFER_KEY_FILE)');
}
