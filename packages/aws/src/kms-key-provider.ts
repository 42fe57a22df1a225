/**
 * `KmsKeyProvider`: repository data keys wrapped by AWS KMS (envelope
 * encryption). A new data key comes from `GenerateDataKey`; adding KMS to an
 * existing repository wraps its keys with `Encrypt`; opening unwraps with
 * `Decrypt`. Every call carries the encryption context
 * `{"coffer:repository": <repository id>}`, which KMS binds to the ciphertext:
 * a wrapped key copied into another repository's config does not decrypt.
 *
 * A wrapping records the full key ARN it was made with, so a reader in
 * another region talks to that key's region (the ARN names it). Plaintext
 * keys are returned to the engine and kept only in memory.
 */
import { DecryptCommand, DescribeKeyCommand, EncryptCommand, GenerateDataKeyCommand, KMSClient } from '@aws-sdk/client-kms';
import type { AwsCredentialIdentity, AwsCredentialIdentityProvider } from '@smithy/types';
import { KeyUnavailableError, WrongKeyError, type DataKey, type KeyContext, type KeyProvider, type WrappedKey, type WrappingKeyState } from '@coffer/engine';
import { describeAwsError, isRetryable, withRetry, type RetryOptions } from './retry.js';
import { KMS_PROVIDER, kmsMayUnwrap } from './light.js';



export interface KmsKeyProviderOptions {
  /** KMS key (id, ARN or alias) for new data keys and new wrappings. */
  keyId?: string;
  /**
   * Which wrappings this provider tries to open: `'any'` (default) tries every
   * KMS wrapping the repository holds; `'key-id'` only those of `keyId` (a
   * region that must use its own key).
   */
  unwrap?: 'any' | 'key-id';
  /** Region for `keyId` when it is not an ARN (default: the SDK's region chain). */
  region?: string;
  /** KMS endpoint (default: AWS, or the SDK's `AWS_ENDPOINT_URL_KMS`). */
  endpoint?: string;
  credentials?: AwsCredentialIdentity | AwsCredentialIdentityProvider;
  retry?: RetryOptions;
}

/** KMS answers that mean "this key will not open it", as opposed to "KMS is unreachable". */
const REFUSALS = new Set([
  'DisabledException',
  'KMSInvalidStateException',
  'NotFoundException',
  'AccessDeniedException',
  'IncorrectKeyException',
  'InvalidCiphertextException',
  'InvalidKeyUsageException',
  'UnrecognizedClientException',
  'InvalidGrantTokenException',
]);

const ARN = /^arn:aws[a-z-]*:kms:([a-z0-9-]+):/;

export class KmsKeyProvider implements KeyProvider {
  readonly kind = KMS_PROVIDER;
  private readonly options: KmsKeyProviderOptions;
  private readonly clients = new Map<string, KMSClient>();

  constructor(options: KmsKeyProviderOptions = {}) {
    this.options = options;
  }

  get keyId(): string | undefined {
    return this.options.keyId;
  }

  private client(region: string | undefined): KMSClient {
    const k = region ?? '';
    let c = this.clients.get(k);
    if (!c) {
      const o = this.options;
      c = new KMSClient({
        ...(region ? { region } : {}),
        ...(o.endpoint ? { endpoint: o.endpoint } : {}),
        ...(o.credentials ? { credentials: o.credentials } : {}),
        maxAttempts: 1,
      });
      this.clients.set(k, c);
    }
    return c;
  }

  private regionOf(keyRef: string | undefined): string | undefined {
    return (keyRef && ARN.exec(keyRef)?.[1]) || this.options.region;
  }

  private requireKeyId(what: string): string {
    if (!this.options.keyId) throw new WrongKeyError(`${what} needs a KMS key id (--kms-key-id or COFFER_KMS_KEY_ID)`);
    return this.options.keyId;
  }

  private async call<T>(keyRef: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await withRetry(fn, this.options.retry);
    } catch (e) {
      const name = (e as { name?: string }).name ?? '';
      if (REFUSALS.has(name)) return Promise.reject(new WrongKeyError(`KMS key ${keyRef}: ${describeAwsError(e)}`));
      const after = isRetryable(e) ? ' (gave up after retries)' : '';
      return Promise.reject(new KeyUnavailableError(keyRef, `${describeAwsError(e)}${after}`, { cause: e }));
    }
  }

  async generateDataKey(context: KeyContext): Promise<DataKey> {
    const keyId = this.requireKeyId('a new data key');
    const r = await this.call(keyId, () =>
      this.client(this.regionOf(keyId)).send(new GenerateDataKeyCommand({ KeyId: keyId, KeySpec: 'AES_256', EncryptionContext: encryptionContext(context) })),
    );
    if (!r.Plaintext || !r.CiphertextBlob || r.Plaintext.length !== 32) throw new KeyUnavailableError(keyId, 'GenerateDataKey returned no 32-byte key');
    return { plaintext: r.Plaintext, wrapped: this.wrapped(r.KeyId ?? keyId, r.CiphertextBlob) };
  }

  async wrap(plaintext: Uint8Array, context: KeyContext): Promise<WrappedKey> {
    const keyId = this.requireKeyId('wrapping a data key');
    const r = await this.call(keyId, () =>
      this.client(this.regionOf(keyId)).send(new EncryptCommand({ KeyId: keyId, Plaintext: plaintext, EncryptionContext: encryptionContext(context) })),
    );
    if (!r.CiphertextBlob) throw new KeyUnavailableError(keyId, 'Encrypt returned no ciphertext');
    return this.wrapped(r.KeyId ?? keyId, r.CiphertextBlob);
  }

  private wrapped(keyArn: string, blob: Uint8Array): WrappedKey {
    return { provider: KMS_PROVIDER, keyRef: keyArn, ciphertext: Buffer.from(blob).toString('base64') };
  }

  canUnwrap(wrapped: WrappedKey): boolean {
    return kmsMayUnwrap(wrapped, this.options.unwrap ?? 'any', this.options.keyId);
  }

  /** DescribeKey: whether the key can still wrap and unwrap (needs kms:DescribeKey). */
  async keyState(keyRef: string): Promise<WrappingKeyState> {
    const meta = await this.call(keyRef, () => this.client(this.regionOf(keyRef)).send(new DescribeKeyCommand({ KeyId: keyRef })));
    const state = meta.KeyMetadata?.KeyState;
    if (state === 'Enabled') return 'enabled';
    if (state === 'Disabled') return 'disabled';
    if (state === 'PendingDeletion' || state === 'PendingReplicaDeletion') return 'pending-deletion';
    return 'unavailable';
  }

  async unwrap(wrapped: WrappedKey, context: KeyContext): Promise<Uint8Array> {
    if (!this.canUnwrap(wrapped)) throw new WrongKeyError(`KMS key ${wrapped.keyRef} is not the one this provider may use`);
    const keyId = this.options.unwrap === 'key-id' ? this.options.keyId : wrapped.keyRef;
    const r = await this.call(wrapped.keyRef, () =>
      this.client(this.regionOf(wrapped.keyRef)).send(
        new DecryptCommand({ CiphertextBlob: Buffer.from(wrapped.ciphertext, 'base64'), EncryptionContext: encryptionContext(context), ...(keyId ? { KeyId: keyId } : {}) }),
      ),
    );
    if (!r.Plaintext || r.Plaintext.length !== 32) throw new WrongKeyError(`KMS key ${wrapped.keyRef} returned no 32-byte data key`);
    return r.Plaintext;
  }

  destroy(): void {
    for (const c of this.clients.values()) c.destroy();
  }
}

function encryptionContext(context: KeyContext): Record<string, string> {
  return { 'coffer:repository': context.repositoryId };
}
