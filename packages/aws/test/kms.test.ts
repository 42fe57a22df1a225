import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { DisableKeyCommand, KMSClient } from '@aws-sdk/client-kms';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  backupFiles,
  checkRepository,
  collectList,
  CorruptObjectError,
  KeyUnavailableError,
  KEYS_PREFIX,
  LocalKeyProvider,
  MemoryStore,
  PACK_PREFIX,
  Repository,
  restoreBackup,
  WrongKeyError,
} from '@coffer/engine';
import { KmsKeyProvider } from '@coffer/aws';
import { KmsTestServer } from '../../../test/support/kms-server.js';
import { scratch } from '../../../test/support/tree.js';

let kms: KmsTestServer;
const credentials = () => ({ accessKeyId: kms.accessKeyId, secretAccessKey: kms.secretAccessKey });

/** A new KMS key in `region`, made through the real SDK; resolves to its ARN. */
function createKey(region: string): Promise<string> {
  return kms.createKey(region, `coffer test key in ${region}`);
}

function provider(keyId: string | undefined, options: { unwrap?: 'any' | 'key-id' } = {}): KmsKeyProvider {
  return new KmsKeyProvider({ ...(keyId ? { keyId } : {}), region: 'us-east-1', endpoint: kms.endpoint, credentials: credentials(), retry: { attempts: 3, baseDelayMs: 5 }, ...options });
}

beforeAll(async () => {
  kms = await KmsTestServer.start();
});
afterAll(async () => {
  await kms?.stop();
});

describe('KmsKeyProvider against a KMS wire-protocol server, through the real SDK', () => {
  it('wraps and unwraps any data key under its repository context (property)', async () => {
    const arn = await createKey('us-east-1');
    const p = provider(arn);
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ minLength: 32, maxLength: 32 }), fc.uuid(), async (key, repositoryId) => {
        const wrapped = await p.wrap(key, { repositoryId });
        expect(wrapped).toMatchObject({ provider: 'aws-kms', keyRef: arn });
        expect(Buffer.from(wrapped.ciphertext, 'base64').includes(Buffer.from(key))).toBe(false);
        expect(Buffer.from(await p.unwrap(wrapped, { repositoryId })).equals(Buffer.from(key))).toBe(true);
      }),
      { numRuns: 25 },
    );
  });

  it('GenerateDataKey gives a 32-byte key that unwraps only under the same repository id', async () => {
    const p = provider(await createKey('us-east-1'));
    const { plaintext, wrapped } = await p.generateDataKey({ repositoryId: 'repo-a' });
    expect(plaintext).toHaveLength(32);
    expect(Buffer.from(await p.unwrap(wrapped, { repositoryId: 'repo-a' })).equals(Buffer.from(plaintext))).toBe(true);
    const err = await p.unwrap(wrapped, { repositoryId: 'repo-b' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(WrongKeyError);
    expect((err as Error).message).toMatch(/InvalidCiphertextException/);
  });

  it('a disabled key refuses with WrongKeyError naming it; an unreachable KMS is KeyUnavailableError', async () => {
    const arn = await createKey('us-east-1');
    const p = provider(arn);
    const { wrapped } = await p.generateDataKey({ repositoryId: 'r' });
    const client = new KMSClient({ region: 'us-east-1', endpoint: kms.endpoint, credentials: credentials() });
    await client.send(new DisableKeyCommand({ KeyId: arn }));
    client.destroy();
    const err = await p.unwrap(wrapped, { repositoryId: 'r' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(WrongKeyError);
    expect((err as Error).message).toContain(arn);
    expect((err as Error).message).toMatch(/DisabledException/);
    const gone = new KmsKeyProvider({ keyId: arn, region: 'us-east-1', endpoint: 'http://127.0.0.1:9', credentials: credentials(), retry: { attempts: 2, baseDelayMs: 5 } });
    await expect(gone.unwrap(wrapped, { repositoryId: 'r' })).rejects.toBeInstanceOf(KeyUnavailableError);
  });

  it('a provider limited to its own key does not try another key, and KMS refuses a mismatched key id', async () => {
    const [a, b] = [await createKey('us-east-1'), await createKey('eu-west-1')];
    const { wrapped } = await provider(a).generateDataKey({ repositoryId: 'r' });
    expect(provider(b, { unwrap: 'key-id' }).canUnwrap(wrapped)).toBe(false);
    expect(provider(a, { unwrap: 'key-id' }).canUnwrap(wrapped)).toBe(true);
    expect(provider(undefined).canUnwrap(wrapped)).toBe(true);
    expect(b).toMatch(/^arn:aws:kms:eu-west-1:/);
  });
});

describe('repositories wrapped by several KMS keys', () => {
  it('key add: the second region\'s key alone opens the repository once the first key is disabled', async () => {
    const [east, west] = [await createKey('us-east-1'), await createKey('eu-west-1')];
    const store = new MemoryStore();
    const repo = await Repository.init(store, provider(east));
    const added = await repo.keyRing.addWrapping(provider(west));
    expect(added?.keyIds).toEqual([1]);
    // Named as key list and key remove name it.
    expect(added?.wrapping).toBe(`aws-kms/${west}`);
    expect(await (await Repository.open(store, provider(east))).keyRing.addWrapping(provider(west))).toBeUndefined();
    kms.setEnabled(east, false);
    // Tried in order, the disabled key is passed over for the next wrapping.
    const any = await Repository.open(store, provider(undefined));
    expect(any.keyRing.material.dataKeys.size).toBe(1);
    const westOnly = await Repository.open(store, provider(west, { unwrap: 'key-id' }));
    expect(Buffer.from(westOnly.keyRing.material.idKey).equals(Buffer.from(repo.keyRing.material.idKey))).toBe(true);
    await expect(Repository.open(store, provider(east, { unwrap: 'key-id' }))).rejects.toBeInstanceOf(WrongKeyError);
    kms.setEnabled(east, true);
  });

  it('key rotate: new writes use the new data key, old backups still restore, nothing is rewritten', async () => {
    const arn = await createKey('us-east-1');
    const store = new MemoryStore();
    const { dir, cleanup } = await scratch('coffer-rotate-');
    try {
      await mkdir(join(dir, 'src'));
      await writeFile(join(dir, 'src', 'a.txt'), 'first backup '.repeat(1000));
      let repo = await Repository.init(store, provider(arn));
      await backupFiles(repo, join(dir, 'src'));
      const packsBefore = new Set((await collectList(store, PACK_PREFIX)).map((o) => o.key));
      const rotated = await repo.keyRing.rotate([provider(arn)]);
      expect(rotated.keyId).toBe(2);
      repo = await Repository.open(store, provider(arn));
      expect(repo.keyRing.currentKeyId).toBe(2);
      await writeFile(join(dir, 'src', 'b.txt'), 'second backup '.repeat(1000));
      await backupFiles(repo, join(dir, 'src'));
      const packsAfter = (await collectList(store, PACK_PREFIX)).map((o) => o.key);
      const newPacks = packsAfter.filter((k) => !packsBefore.has(k));
      expect(newPacks.length).toBeGreaterThan(0);
      for (const k of packsBefore) expect(packsAfter).toContain(k);
      // Every blob of a new pack names the key that sealed it (bytes 1–2 of the blob header).
      const pack = Buffer.from(await store.get(newPacks[0]!));
      expect(pack.readUInt16BE(1)).toBe(2);
      const old = Buffer.from(await store.get([...packsBefore][0]!));
      expect(old.readUInt16BE(1)).toBe(1);
      for (const backup of await repo.listBackupKeys()) {
        const to = join(dir, `restore-${backup.slice(-8)}`);
        await restoreBackup(repo, backup, to);
        expect(await readFile(join(to, 'a.txt'), 'utf8')).toBe('first backup '.repeat(1000));
      }
      expect((await checkRepository(repo, { readData: true })).ok).toBe(true);
    } finally {
      await cleanup();
    }
  });

  it('a key record planted by someone without the keys is refused', async () => {
    const store = new MemoryStore();
    const repo = await Repository.init(store, LocalKeyProvider.fromPassphrase('right'));
    const attacker = await Repository.init(new MemoryStore(), LocalKeyProvider.fromPassphrase('right'));
    // The attacker's record is well-formed but signed under another repository's id key.
    await attacker.keyRing.rotate([LocalKeyProvider.fromPassphrase('right')]);
    const [planted] = await attacker.objects.list(KEYS_PREFIX);
    const bytes = Buffer.from(await attacker.objects.get(planted!.key)).toString('utf8').replaceAll(attacker.config.repositoryId, repo.config.repositoryId);
    const { createHash } = await import('node:crypto');
    await store.put(`${KEYS_PREFIX}${createHash('sha256').update(bytes).digest('hex')}`, Buffer.from(bytes));
    await expect(Repository.open(store, LocalKeyProvider.fromPassphrase('right'))).rejects.toBeInstanceOf(CorruptObjectError);
  });
});
