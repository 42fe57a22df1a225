import { createHash, hkdfSync, randomBytes, scrypt as scryptCb, type ScryptOptions } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { open as openBox, seal } from '../crypto/aead.js';
import { InvalidArgumentError, UnsupportedFormatError, WrongKeyError } from '../errors.js';
import type { DataKey, KeyContext, KeyProvider, WrappedKey } from './key-provider.js';

/**
 * scrypt cost for new wrappings: N = 2^17, r = 8, p = 1 (128 MiB, about 0.3 s
 * here), the minimum OWASP's password storage guidance gives for scrypt today;
 * a passphrase-wrapped key sits in the repository for an attacker to guess at
 * offline for years. Unattended hosts should use a key file (32 random bytes,
 * HKDF, no cost per run) instead.
 */
const SCRYPT = { N: 1 << 17, r: 8, p: 1 } as const;

/**
 * Bounds on the cost read back from a repository: a planted config must not
 * make opening allocate gigabytes or run for hours, nor drop below what
 * repositories were ever written with.
 */
const SCRYPT_BOUNDS = { minLogN: 14, maxLogN: 20, maxR: 32, maxP: 16, maxMemory: 1024 * 1024 * 1024 } as const;

function scryptParams(params: Record<string, string | number> | undefined): { N: number; r: number; p: number } {
  const N = Number(params?.N ?? SCRYPT.N);
  const r = Number(params?.r ?? SCRYPT.r);
  const p = Number(params?.p ?? SCRYPT.p);
  const logN = Math.log2(N);
  const ok =
    Number.isInteger(logN) && logN >= SCRYPT_BOUNDS.minLogN && logN <= SCRYPT_BOUNDS.maxLogN &&
    Number.isInteger(r) && r >= 1 && r <= SCRYPT_BOUNDS.maxR &&
    Number.isInteger(p) && p >= 1 && p <= SCRYPT_BOUNDS.maxP &&
    128 * N * r <= SCRYPT_BOUNDS.maxMemory;
  if (!ok) throw new UnsupportedFormatError('config', `passphrase KDF parameters scrypt N=${params?.N} r=${params?.r} p=${params?.p} are outside what Coffer accepts (N 2^${SCRYPT_BOUNDS.minLogN}–2^${SCRYPT_BOUNDS.maxLogN}, r ≤ ${SCRYPT_BOUNDS.maxR}, p ≤ ${SCRYPT_BOUNDS.maxP}, ≤ 1 GiB)`);
  return { N, r, p };
}

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
      return scrypt(this.secret.value, salt, scryptParams(params));
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
    if (wrapped.params?.kdf !== undefined && wrapped.params.kdf !== (this.secret.kind === 'passphrase' ? 'scrypt' : 'hkdf-sha256')) {
      throw new UnsupportedFormatError('config', `key derivation ${JSON.stringify(wrapped.params.kdf)} is not one Coffer uses`);
    }
    const salt = Buffer.from(String(wrapped.params?.salt ?? ''), 'base64');
    if (salt.length < 16 || salt.length > 64) throw new UnsupportedFormatError('config', `a KDF salt of ${salt.length} bytes is not one Coffer writes`);
    const kek = await this.kek(salt, wrapped.params);
    const plain = openBox(kek, Buffer.from(wrapped.ciphertext, 'base64'), aadFor(context));
    if (!plain) throw new WrongKeyError(`the ${this.secret.kind === 'passphrase' ? 'passphrase' : 'key file'} does not open this repository`);
    return plain;
  }
}

function aadFor(context: KeyContext): Buffer {
  return createHash('sha256').update(`coffer data key\0${context.repositoryId}`).digest();
}
