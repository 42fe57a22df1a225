/**
 * Turns `--repo` and the key and S3 options (or their environment variables)
 * into a store and key providers. Credentials for S3 and KMS come from the
 * AWS SDK's standard chain (environment, profiles, instance and pod roles);
 * nothing secret is read from the command line or written anywhere.
 */
import { resolve } from 'node:path';
import { FileStore, fileStorePath, InvalidArgumentError, LocalKeyProvider, type DataKey, type KeyContext, type KeyProvider, type ObjectStore, type WrappedKey, type WrappingKeyState } from '@coffer/engine';
import type { KmsKeyProvider, KmsKeyProviderOptions, ObjectLockRetention, S3StoreOptions } from '@coffer/aws';
// The AWS SDK loads only when S3 or KMS is used (imported below on first use): most runs never need it.
import { KMS_PROVIDER, kmsMayUnwrap, parseS3Url } from '@coffer/aws/light';

export { KMS_PROVIDER };

export interface RepoOptions {
  repo?: string;
  keyFile?: string;
  kmsKeyId?: string;
  s3Endpoint?: string;
  s3PathStyle?: boolean;
  s3PackStorageClass?: string;
  s3MetadataStorageClass?: string;
  s3SseKmsKeyId?: string;
  s3ObjectLock?: string;
  /** S3 credentials given explicitly (a mirror's destination); otherwise the AWS SDK's chain. */
  s3Credentials?: { accessKeyId: string; secretAccessKey: string; sessionToken?: string };
}

const URL_SCHEME = /^[a-z][a-z0-9+.-]*:\/\//i;

/** A URL as it is; a path made absolute (for commands that run elsewhere, like restore_command). */
export function absoluteLocation(location: string): string {
  return URL_SCHEME.test(location) ? location : resolve(location);
}

export function repoLocation(opts: RepoOptions, env: NodeJS.ProcessEnv): string {
  const location = opts.repo ?? env.COFFER_REPO;
  if (!location) throw new InvalidArgumentError('repository', 'pass --repo PATH|file://URL|s3://BUCKET/PREFIX or set COFFER_REPO');
  return location;
}

/** The AWS region: the SDK's variables, else us-east-1 for an explicit endpoint (S3-compatible servers ignore it). */
function region(env: NodeJS.ProcessEnv, endpoint: string | undefined): string | undefined {
  return env.AWS_REGION ?? env.AWS_DEFAULT_REGION ?? (endpoint ? 'us-east-1' : undefined);
}

function parseObjectLock(value: string): ObjectLockRetention {
  const m = /^(GOVERNANCE|COMPLIANCE):([1-9][0-9]{0,4})$/i.exec(value);
  if (!m) throw new InvalidArgumentError('--s3-object-lock', `expected MODE:DAYS with MODE GOVERNANCE or COMPLIANCE, got ${JSON.stringify(value)}`);
  return { mode: m[1]!.toUpperCase() as ObjectLockRetention['mode'], days: Number(m[2]) };
}

export function s3StoreOptions(url: string, opts: RepoOptions, env: NodeJS.ProcessEnv): S3StoreOptions {
  const { bucket, prefix } = parseS3Url(url);
  const endpoint = opts.s3Endpoint ?? env.AWS_ENDPOINT_URL_S3 ?? env.AWS_ENDPOINT_URL;
  if (endpoint !== undefined && !/^https?:\/\/[^/]+/.test(endpoint)) throw new InvalidArgumentError('S3 endpoint', `${JSON.stringify(endpoint)} is not an http(s) URL`);
  const packs = opts.s3PackStorageClass ?? env.COFFER_S3_PACK_STORAGE_CLASS;
  const metadata = opts.s3MetadataStorageClass ?? env.COFFER_S3_METADATA_STORAGE_CLASS;
  const sse = opts.s3SseKmsKeyId ?? env.COFFER_S3_SSE_KMS_KEY_ID;
  const lock = opts.s3ObjectLock ?? env.COFFER_S3_OBJECT_LOCK;
  const r = region(env, endpoint);
  return {
    bucket,
    prefix,
    ...(r ? { region: r } : {}),
    ...(endpoint ? { endpoint } : {}),
    ...(opts.s3PathStyle !== undefined ? { forcePathStyle: opts.s3PathStyle } : {}),
    ...(packs || metadata ? { storageClass: { ...(packs ? { packs: packs as never } : {}), ...(metadata ? { metadata: metadata as never } : {}) } } : {}),
    ...(sse ? { sseKmsKeyId: sse } : {}),
    ...(lock ? { objectLock: parseObjectLock(lock) } : {}),
    ...(opts.s3Credentials ? { credentials: opts.s3Credentials } : {}),
  };
}

/**
 * How to reach a mirror's destination: the source's settings, except where
 * COFFER_TO_AWS_* (or `--to-s3-endpoint`) say otherwise — another region, or
 * another account's bucket with its own credentials.
 */
export function destinationAccess(opts: RepoOptions, env: NodeJS.ProcessEnv, endpoint?: string): { options: RepoOptions; env: NodeJS.ProcessEnv } {
  const toEndpoint = endpoint ?? env.COFFER_TO_AWS_ENDPOINT_URL_S3;
  const accessKeyId = env.COFFER_TO_AWS_ACCESS_KEY_ID;
  const secretAccessKey = env.COFFER_TO_AWS_SECRET_ACCESS_KEY;
  if ((accessKeyId === undefined) !== (secretAccessKey === undefined)) {
    throw new InvalidArgumentError('destination credentials', 'set both COFFER_TO_AWS_ACCESS_KEY_ID and COFFER_TO_AWS_SECRET_ACCESS_KEY, or neither');
  }
  const sessionToken = env.COFFER_TO_AWS_SESSION_TOKEN;
  const options: RepoOptions = {
    ...opts,
    ...(toEndpoint ? { s3Endpoint: toEndpoint } : {}),
    ...(accessKeyId && secretAccessKey ? { s3Credentials: { accessKeyId, secretAccessKey, ...(sessionToken ? { sessionToken } : {}) } } : {}),
  };
  const region = env.COFFER_TO_AWS_REGION;
  return { options, env: region ? { ...env, AWS_REGION: region, AWS_DEFAULT_REGION: region } : env };
}

/** Every store this process opened, for the request counts its run reports (S3 stores keep them). */
export const OPENED_STORES: ObjectStore[] = [];

/** A store for `location`: a directory path, a file:// URL, or s3://bucket/prefix. */
export async function storeAt(location: string, opts: RepoOptions, env: NodeJS.ProcessEnv): Promise<ObjectStore> {
  if (location.startsWith('s3://')) {
    const options = s3StoreOptions(location, opts, env);
    const { S3Store } = await import('@coffer/aws');
    const store = new S3Store(options);
    OPENED_STORES.push(store);
    return store;
  }
  if (URL_SCHEME.test(location) && !location.startsWith('file://')) {
    throw new InvalidArgumentError('repository', `${location}: unknown scheme (use a path, file:// or s3://)`);
  }
  return new FileStore(fileStorePath(location));
}

/**
 * A mirror WAL is also written to (`--wal-mirror`): a path, or an S3 URL
 * whose `?region=…&endpoint=…` say where that bucket is when it is not where
 * the repository is. Credentials are the destination's, as `coffer mirror`
 * takes them (COFFER_TO_AWS_*), else the AWS SDK's chain: never in the URL.
 */
export async function mirrorStoreAt(location: string, opts: RepoOptions, env: NodeJS.ProcessEnv): Promise<ObjectStore> {
  const q = location.indexOf('?');
  const base = q < 0 ? location : location.slice(0, q);
  const params = new URLSearchParams(q < 0 ? '' : location.slice(q + 1));
  for (const name of params.keys()) {
    if (name !== 'region' && name !== 'endpoint') throw new InvalidArgumentError('--wal-mirror', `${base}: unknown setting ${JSON.stringify(name)} (a mirror's URL may say region= and endpoint=; credentials come from COFFER_TO_AWS_* or the AWS SDK's chain)`);
  }
  if (params.size > 0 && !base.startsWith('s3://')) throw new InvalidArgumentError('--wal-mirror', `${base}: region= and endpoint= are for s3:// mirrors`);
  const dest = destinationAccess(opts, env, params.get('endpoint') ?? undefined);
  const region = params.get('region');
  return storeAt(absoluteLocation(base), dest.options, region ? { ...dest.env, AWS_REGION: region, AWS_DEFAULT_REGION: region } : dest.env);
}

export function openStore(opts: RepoOptions, env: NodeJS.ProcessEnv): Promise<ObjectStore> {
  return storeAt(repoLocation(opts, env), opts, env);
}

export function kmsProvider(keyId: string | undefined, env: NodeJS.ProcessEnv, unwrap: 'any' | 'key-id' = 'any'): KeyProvider {
  const endpoint = env.AWS_ENDPOINT_URL_KMS ?? env.AWS_ENDPOINT_URL;
  const r = region(env, endpoint);
  return new DeferredKmsProvider({ ...(keyId ? { keyId } : {}), unwrap, ...(endpoint ? { endpoint } : {}), ...(r ? { region: r } : {}) });
}

/** A KMS provider that loads the AWS SDK when it is first asked to do something, not when it is listed. */
class DeferredKmsProvider implements KeyProvider {
  readonly kind = KMS_PROVIDER;
  private real: Promise<KmsKeyProvider> | undefined;
  constructor(private readonly options: KmsKeyProviderOptions) {}
  private provider(): Promise<KmsKeyProvider> {
    this.real ??= import('@coffer/aws').then(({ KmsKeyProvider }) => new KmsKeyProvider(this.options));
    return this.real;
  }
  canUnwrap(wrapped: WrappedKey): boolean {
    return kmsMayUnwrap(wrapped, this.options.unwrap ?? 'any', this.options.keyId);
  }
  async generateDataKey(context: KeyContext): Promise<DataKey> {
    return (await this.provider()).generateDataKey(context);
  }
  async wrap(plaintext: Uint8Array, context: KeyContext): Promise<WrappedKey> {
    return (await this.provider()).wrap(plaintext, context);
  }
  async unwrap(wrapped: WrappedKey, context: KeyContext): Promise<Uint8Array> {
    return (await this.provider()).unwrap(wrapped, context);
  }
  async keyState(keyRef: string): Promise<WrappingKeyState> {
    return (await this.provider()).keyState(keyRef);
  }
}

/** The passphrase is read from the environment only: a command-line argument would show in `ps`. */
export async function localProvider(opts: RepoOptions, env: NodeJS.ProcessEnv, warn?: (line: string) => void): Promise<LocalKeyProvider | undefined> {
  const keyFile = opts.keyFile ?? env.COFFER_KEY_FILE;
  // Both given: the key file is used, and the user is told so rather than left to guess.
  if (keyFile && env.COFFER_PASSPHRASE) warn?.(`using the key file ${keyFile}${opts.keyFile ? ' (--key-file)' : ' (COFFER_KEY_FILE)'}; COFFER_PASSPHRASE is set too and is not used`);
  if (keyFile) return LocalKeyProvider.fromKeyFile(keyFile);
  const passphrase = env.COFFER_PASSPHRASE;
  return passphrase ? LocalKeyProvider.fromPassphrase(passphrase) : undefined;
}

/**
 * Providers that may open a repository: the local key when one is given, and
 * AWS KMS — restricted to `--kms-key-id` when one is given (a region using its
 * own key), else any KMS key the repository is wrapped by.
 */
export async function keyProviders(opts: RepoOptions, env: NodeJS.ProcessEnv, warn?: (line: string) => void): Promise<KeyProvider[]> {
  const local = await localProvider(opts, env, warn);
  const kmsKeyId = opts.kmsKeyId ?? env.COFFER_KMS_KEY_ID;
  return [...(local ? [local] : []), kmsProvider(kmsKeyId, env, kmsKeyId ? 'key-id' : 'any')];
}

/** Providers that wrap a new repository's data key: KMS with --kms-key-id, and/or the local key. */
export async function initProviders(opts: RepoOptions, env: NodeJS.ProcessEnv, warn?: (line: string) => void): Promise<KeyProvider[]> {
  const local = await localProvider(opts, env, warn);
  const kmsKeyId = opts.kmsKeyId ?? env.COFFER_KMS_KEY_ID;
  const providers = [...(kmsKeyId ? [kmsProvider(kmsKeyId, env)] : []), ...(local ? [local] : [])];
  if (providers.length === 0) throw new InvalidArgumentError('key', 'set COFFER_PASSPHRASE, pass --key-file FILE (or set COFFER_KEY_FILE), or pass --kms-key-id (or set COFFER_KMS_KEY_ID)');
  return providers;
}

/**
 * The keys of a re-encrypted copy (`mirror --reencrypt`): the destination's
 * own — COFFER_TO_PASSPHRASE, `--to-key-file` (or COFFER_TO_KEY_FILE),
 * `--to-kms-key-id` (or COFFER_TO_KMS_KEY_ID, reached at
 * COFFER_TO_AWS_ENDPOINT_URL_KMS when that is set) — and never the source's:
 * a copy wrapped by the keys it replaces would protect nothing.
 */
export async function destinationKeyProviders(toKeyFile: string | undefined, toKmsKeyId: string | undefined, env: NodeJS.ProcessEnv, fresh: boolean, warn?: (line: string) => void): Promise<KeyProvider[]> {
  const { COFFER_PASSPHRASE: _p, COFFER_KEY_FILE: _f, COFFER_KMS_KEY_ID: _k, ...rest } = env;
  const view: NodeJS.ProcessEnv = {
    ...rest,
    ...(env.COFFER_TO_PASSPHRASE ? { COFFER_PASSPHRASE: env.COFFER_TO_PASSPHRASE } : {}),
    ...(env.COFFER_TO_KEY_FILE ? { COFFER_KEY_FILE: env.COFFER_TO_KEY_FILE } : {}),
    ...(env.COFFER_TO_KMS_KEY_ID ? { COFFER_KMS_KEY_ID: env.COFFER_TO_KMS_KEY_ID } : {}),
    ...(env.COFFER_TO_AWS_ENDPOINT_URL_KMS ? { AWS_ENDPOINT_URL_KMS: env.COFFER_TO_AWS_ENDPOINT_URL_KMS } : {}),
  };
  const opts: RepoOptions = { ...(toKeyFile ? { keyFile: toKeyFile } : {}), ...(toKmsKeyId ? { kmsKeyId: toKmsKeyId } : {}) };
  if (!opts.keyFile && !opts.kmsKeyId && !view.COFFER_PASSPHRASE && !view.COFFER_KEY_FILE && !view.COFFER_KMS_KEY_ID) {
    throw new InvalidArgumentError('--to-key-file', 'a re-encrypted copy needs keys of its own: set COFFER_TO_PASSPHRASE, pass --to-key-file FILE (or set COFFER_TO_KEY_FILE), or pass --to-kms-key-id (or set COFFER_TO_KMS_KEY_ID)');
  }
  return fresh ? initProviders(opts, view, warn) : keyProviders(opts, view, warn);
}
