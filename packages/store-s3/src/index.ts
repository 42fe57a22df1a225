/**
 * @coffer/store-s3 — S3Store and KmsKeyProvider implement the engine's
 * `ObjectStore` and `KeyProvider` contracts. This package holds the S3 URL
 * syntax that the CLI accepts; the store and the KMS provider land with the
 * S3 work (see the project's issues), and until then an `s3://` repository is
 * refused with a clear error rather than half-supported.
 */
import { InvalidArgumentError } from '@coffer/engine';

export interface S3Location {
  bucket: string;
  prefix: string;
}

/** Parses `s3://bucket/prefix` into bucket and key prefix (no trailing slash). */
export function parseS3Url(url: string): S3Location {
  const m = /^s3:\/\/([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])(?:\/(.*))?$/.exec(url);
  if (!m) throw new InvalidArgumentError('repository', `${url} is not an s3://bucket/prefix URL`);
  return { bucket: m[1]!, prefix: (m[2] ?? '').replace(/\/+$/, '') };
}
