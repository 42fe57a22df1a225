/**
 * @coffer/aws — Coffer repositories on S3 and S3-compatible servers, with
 * data keys wrapped by AWS KMS. `S3Store` implements the engine's
 * `ObjectStore` contract and `KmsKeyProvider` its `KeyProvider` contract; both
 * pass the same suites as the engine's own implementations.
 */
export { S3Store, type S3StoreOptions, type S3RequestStats, type ObjectLockRetention } from './s3-store.js';
export { S3Versions, type S3Access } from './s3-versions.js';
export { setupBucket, DEFAULT_NONCURRENT_DAYS, type BucketSetupOptions, type BucketSetupReport } from './bucket-setup.js';
export { parseS3Url, type S3Location } from './s3-url.js';
export { withRetry, isRetryable, type RetryOptions } from './retry.js';
export { KmsKeyProvider, type KmsKeyProviderOptions } from './kms-key-provider.js';
export { KMS_PROVIDER, kmsMayUnwrap } from './light.js';
