/**
 * Key providers wrap and unwrap the repository's data keys (envelope
 * encryption). A data key is 32 random bytes that never leaves memory in the
 * clear; the repository `config` stores it only wrapped, once per provider
 * (one per region, say), so any one provider can open the repository.
 */

/** A data key wrapped by one provider; stored verbatim in the repository config. */
export interface WrappedKey {
  /** Provider kind, e.g. `local` or `aws-kms`. */
  provider: string;
  /** Which key of that provider wrapped it (KMS key ARN, or a local key fingerprint label). */
  keyRef: string;
  /** The wrapped key, base64. */
  ciphertext: string;
  /** Provider-specific, non-secret parameters (KDF salt and cost…). */
  params?: Record<string, string | number>;
}

export interface DataKey {
  plaintext: Uint8Array;
  wrapped: WrappedKey;
}

/** Binds a wrapped key to its repository, so a key cannot be moved between repositories. */
export interface KeyContext {
  repositoryId: string;
}

export interface KeyProvider {
  /** Provider kind written into each {@link WrappedKey}. */
  readonly kind: string;
  /** A new random data key, with its wrapping by this provider. */
  generateDataKey(context: KeyContext): Promise<DataKey>;
  /** Wrap an existing data key (adds this provider to a repository). */
  wrap(plaintext: Uint8Array, context: KeyContext): Promise<WrappedKey>;
  /** Whether this provider could unwrap `wrapped` (same kind, same key reference). */
  canUnwrap(wrapped: WrappedKey): boolean;
  /** Unwrap; rejects with `WrongKeyError` when the key does not match. */
  unwrap(wrapped: WrappedKey, context: KeyContext): Promise<Uint8Array>;
  /**
   * The state of the key behind `keyRef` at the key service, where there is
   * one (KMS): a disabled key, or one scheduled for deletion, will stop
   * opening the repository. Local keys have no such state.
   */
  keyState?(keyRef: string): Promise<WrappingKeyState>;
}

/** What a key service says of a wrapping key. */
export type WrappingKeyState = 'enabled' | 'disabled' | 'pending-deletion' | 'unavailable';
