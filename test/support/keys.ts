/** A scratch directory with a key file in it, for tests that make repositories. */
import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { LocalKeyProvider } from '@coffer/engine';
import { scratch } from './tree.js';

/** A key file (HKDF), not a passphrase (scrypt): cheap enough for a repository per property run. */
export async function scratchWithKey(prefix: string): Promise<{ work: { dir: string; cleanup: () => Promise<void> }; keys: LocalKeyProvider }> {
  const work = await scratch(prefix);
  await writeFile(join(work.dir, 'key'), randomBytes(32).toString('hex'));
  return { work, keys: await LocalKeyProvider.fromKeyFile(join(work.dir, 'key')) };
}
