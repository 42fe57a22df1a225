import { createHash, hkdfSync, randomBytes, scrypt as scryptCb, type ScryptOptions } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { open as openBox, seal } from '../crypto/aead.js';
import { InvalidArgumentError, WrongKeyError } from '../errors.js';
import type { DataKey, KeyContext, KeyProvider, WrappedKey } from './key-provider.js';

/** scrypt cost: about 0.1 s and 32 MiB here, as recommended for interactive logins. */
const SCRYPT = { N: 1 << 15, r: 8, p: 1 } as const;

function scrypt(secret: Uint8Array, salt: Uint8Array, opts: ScryptOptions): Promise<Buffer> {
  return new Promise((resolve, reject) =>
    scryptCb(secret, salt, 32, { ...opts, maxmem: 128 * opts.N! * opts.r! * 2 }, (err, key) => (err ? reject(err) : resolve(key))),
  );
}

type Secret = { kind: 'passphrase'; value: Uint8Array } | { kind: 'key-file'; value: Uint8Array };

/**
 * The embedded default: a key-encryption key derived from a passphrase
 * (scrypt) or from a key file (HKDF over its bytes), wrapping data keys with
 * AES-256-GCM. The secret is held only in memory; nothing it derives is written.
 */
export class LocalKeyProvider implements KeyProvider {
  readonly kind = 'local';
  private readonly secret: Secret;

  private constructor(secret: Secret) {
    this.secret = secret;
  }

  static fromPassphrase(passphrase: string): LocalKeyProvider {
    if (passphrase.length === 0) throw new InvalidArgumentError('passphrase', 'must not be empty');
    return new LocalKeyProvider({ kind: 'passphrase', value: Buffer.from(passphrase, 'utf8') });
  }

  /** A key file holds at least 32 bytes of secret (raw, or any text such as base64). */
  static async fromKeyFile(path: string): Promise<LocalKeyProvider> {
    let bytes: Buffer;
    try {
      bytes = await readFile(path);
    } catch (e) {
      throw new InvalidArgumentError('key file', `${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
    const trimmed = Buffer.from(bytes.toString('latin1').trim(), 'latin1');
    if (trimmed.length < 32) throw new InvalidArgumentError('key file', `${path} holds ${trimmed.length} bytes; at least 32 are needed`);
    return new LocalKeyProvider({ kind: 'key-file', value: trimmed });
  }

  /** 32 random bytes, base64 — the content of a new key file. */
  static newKeyFileContent(): string {
    return randomBytes(32).toString('base64') + '\n';
  }

  private keyRef(): string {
    return this.secret.kind;
  }

  private async kek(salt: Uint8Array, params: Record<string, string | number> | undefined): Promise<Buffer> {
    if (this.secret.kind === 'passphrase') {
      const N = Number(params?.N ?? SCRYPT.N);
      const r = Number(params?.r ?? SCRYPT.r);
      const p = Number(params?.p ?? SCRYPT.p);
      return scrypt(this.secret.value, salt, { N, r, p });
    }
    return Buffer.from(hkdfSync('sha256', this.secret.value, salt, 'coffer key-file kek', 32));
  }

  async generateDataKey(context: KeyContext): Promise<DataKey> {
    const plaintext = randomBytes(32);
    return { plaintext, wrapped: await this.wrap(plaintext, context) };
  }

  async wrap(plaintext: Uint8Array, context: KeyContext): Promise<WrappedKey> {
    const salt = randomBytes(16);
    const params: Record<string, string | number> =
      this.secret.kind === 'passphrase' ? { kdf: 'scrypt', salt: salt.toString('base64'), ...SCRYPT } : { kdf: 'hkdf-sha256', salt: salt.toString('base64') };
    const kek = await this.kek(salt, params);
    const box = seal(kek, plaintext, aadFor(context));
    return { provider: this.kind, keyRef: this.keyRef(), ciphertext: box.toString('base64'), params };
  }

  canUnwrap(wrapped: WrappedKey): boolean {
    return wrapped.provider === this.kind && wrapped.keyRef === this.keyRef();
  }

  async unwrap(wrapped: WrappedKey, context: KeyContext): Promise<Uint8Array> {
    if (!this.canUnwrap(wrapped)) throw new WrongKeyError(`the repository key is wrapped by ${wrapped.provider}/${wrapped.keyRef}, not by a local ${this.keyRef()}`);
    const salt = Buffer.from(String(wrapped.params?.salt ?? ''), 'base64');
    const kek = await this.kek(salt, wrapped.params);
    const plain = openBox(kek, Buffer.from(wrapped.ciphertext, 'base64'), aadFor(context));
    if (!plain) throw new WrongKeyError(`the ${this.secret.kind === 'passphrase' ? 'passphrase' : 'key file'} does not open this repository`);
    return plain;
  }
}

function aadFor(context: KeyContext): Buffer {
  return createHash('sha256').update(`coffer data key\0${context.repositoryId}`).digest();
}
