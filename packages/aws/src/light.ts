/**
 * What a caller needs before it knows whether S3 or KMS is involved — names
 * and parsing — without loading the AWS SDK (a command-line run that never
 * touches AWS starts faster; archive_command runs once per WAL file).
 */
import type { WrappedKey } from '@coffer/engine';

export { parseS3Url, type S3Location } from './s3-url.js';

export const KMS_PROVIDER = 'aws-kms';

/** Whether a KMS provider with these settings may try to unwrap `wrapped`. */
export function kmsMayUnwrap(wrapped: WrappedKey, unwrap: 'any' | 'key-id', keyId: string | undefined): boolean {
  if (wrapped.provider !== KMS_PROVIDER) return false;
  if (unwrap !== 'key-id') return true;
  // An alias cannot be matched here; KMS itself refuses a wrapping of another key (IncorrectKeyException).
  return !!keyId && (keyId.startsWith('alias/') || wrapped.keyRef === keyId || wrapped.keyRef.endsWith(`:key/${keyId}`));
}
