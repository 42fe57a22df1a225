/**
 * What a bucket needs around a Coffer repository, applied or checked
 * (`coffer bucket setup [--check]`):
 *
 * - On a versioned bucket (Object Lock needs one) a delete only adds a delete
 *   marker and the bytes stay: a lifecycle rule expires noncurrent versions
 *   once the protection window has passed (the lock period, or a chosen
 *   number of days), and removes delete markers left with nothing under them.
 * - Multipart uploads a crash left unfinished are aborted after a day (their
 *   parts are billed and invisible otherwise).
 * - Object Lock: Coffer locks object by object (`isLockable`), so a bucket
 *   default retention — which would lock leases and other records Coffer must
 *   remove — is taken off; a lock policy on a bucket without Object Lock is
 *   refused.
 *
 * Rules are Coffer's by their ids; other rules on the bucket are kept.
 */
import {
  GetBucketLifecycleConfigurationCommand,
  GetBucketVersioningCommand,
  GetObjectLockConfigurationCommand,
  PutBucketLifecycleConfigurationCommand,
  PutObjectLockConfigurationCommand,
  type LifecycleRule,
} from '@aws-sdk/client-s3';
import { InvalidArgumentError, MissingObjectError } from '@coffer/engine';
import type { S3Store } from './s3-store.js';

export const NONCURRENT_RULE_ID = 'coffer-noncurrent-versions';
export const MULTIPART_RULE_ID = 'coffer-incomplete-uploads';
/** Protection window for noncurrent versions on a versioned bucket without a lock policy. */
export const DEFAULT_NONCURRENT_DAYS = 30;

export interface BucketSetupOptions {
  /** Days a noncurrent version is kept (default: the lock period plus one, else 30). */
  noncurrentDays?: number;
  /** Report what differs; change nothing. */
  check?: boolean;
}

export interface BucketSetupReport {
  bucket: string;
  /** The key prefix the rules apply to ('' for the whole bucket). */
  prefix: string;
  versioning: 'Enabled' | 'Suspended' | 'off';
  objectLock: boolean;
  /** A bucket default retention found (mode, days or years). */
  defaultRetention?: string;
  noncurrentDays: number | undefined;
  /** What was changed (or, with `check`, what would be). */
  changes: string[];
  /** With `check`: whether the bucket already is as setup leaves it. */
  ok: boolean;
}

export async function setupBucket(store: S3Store, options: BucketSetupOptions = {}): Promise<BucketSetupReport> {
  const { client, bucket } = store;
  const prefix = store.prefix ? `${store.prefix}/` : '';
  const lockPolicy = store.versions.lockPolicy;
  const send = <T>(op: string, fn: () => Promise<T>) => store.run(op, bucket, fn);

  const v = await send('GetBucketVersioning', () => client.send(new GetBucketVersioningCommand({ Bucket: bucket })));
  const versioning = v.Status === 'Enabled' || v.Status === 'Suspended' ? v.Status : 'off';
  let lockEnabled = false;
  let defaultRetention: string | undefined;
  try {
    const l = await send('GetObjectLockConfiguration', () => client.send(new GetObjectLockConfigurationCommand({ Bucket: bucket })));
    lockEnabled = l.ObjectLockConfiguration?.ObjectLockEnabled === 'Enabled';
    const d = l.ObjectLockConfiguration?.Rule?.DefaultRetention;
    if (d) defaultRetention = `${d.Mode} ${d.Days !== undefined ? `${d.Days} days` : `${d.Years} years`}`;
  } catch (e) {
    if (!isAbsentConfiguration(e)) throw e;
  }
  if (lockPolicy && !lockEnabled) {
    throw new InvalidArgumentError('Object Lock', `bucket ${bucket} was not created with Object Lock, so the retention asked for (${lockPolicy.mode}:${lockPolicy.days}) cannot be set; create the bucket with Object Lock enabled`);
  }
  const noncurrentDays = versioning === 'off' ? undefined : options.noncurrentDays ?? (lockPolicy ? lockPolicy.days + 1 : DEFAULT_NONCURRENT_DAYS);
  if (noncurrentDays !== undefined && lockPolicy && noncurrentDays < lockPolicy.days) {
    throw new InvalidArgumentError('--noncurrent-days', `${noncurrentDays} is shorter than the lock period (${lockPolicy.days} days): versions the lock still protects cannot expire anyway`);
  }

  const changes: string[] = [];
  if (defaultRetention) changes.push(`remove the bucket default retention (${defaultRetention}): Coffer locks each object that needs it, and a default would lock leases too`);

  let existing: LifecycleRule[] = [];
  try {
    existing = (await send('GetBucketLifecycleConfiguration', () => client.send(new GetBucketLifecycleConfigurationCommand({ Bucket: bucket })))).Rules ?? [];
  } catch (e) {
    if (!isAbsentConfiguration(e)) throw e;
  }
  const wanted: LifecycleRule[] = [{ ID: MULTIPART_RULE_ID, Status: 'Enabled', Filter: { Prefix: prefix }, AbortIncompleteMultipartUpload: { DaysAfterInitiation: 1 } }];
  if (noncurrentDays !== undefined) {
    wanted.push({ ID: NONCURRENT_RULE_ID, Status: 'Enabled', Filter: { Prefix: prefix }, NoncurrentVersionExpiration: { NoncurrentDays: noncurrentDays }, Expiration: { ExpiredObjectDeleteMarker: true } });
  }
  const ours = new Set([MULTIPART_RULE_ID, NONCURRENT_RULE_ID]);
  for (const rule of wanted) {
    const have = existing.find((r) => r.ID === rule.ID);
    if (!have || !sameRule(have, rule)) changes.push(`${have ? 'update' : 'add'} lifecycle rule ${rule.ID}: ${describeRule(rule)}`);
  }
  const stale = existing.filter((r) => r.ID === NONCURRENT_RULE_ID && noncurrentDays === undefined);
  for (const r of stale) changes.push(`remove lifecycle rule ${r.ID} (the bucket keeps no versions)`);

  const report: BucketSetupReport = { bucket, prefix, versioning, objectLock: lockEnabled, ...(defaultRetention ? { defaultRetention } : {}), noncurrentDays, changes, ok: changes.length === 0 };
  if (options.check || changes.length === 0) return report;

  if (defaultRetention) {
    await send('PutObjectLockConfiguration', () => client.send(new PutObjectLockConfigurationCommand({ Bucket: bucket, ObjectLockConfiguration: { ObjectLockEnabled: 'Enabled' } })));
  }
  const rules = [...existing.filter((r) => !ours.has(r.ID ?? '')), ...wanted];
  await send('PutBucketLifecycleConfiguration', () => client.send(new PutBucketLifecycleConfigurationCommand({ Bucket: bucket, LifecycleConfiguration: { Rules: rules } })));
  report.ok = true;
  return report;
}

/** A configuration the bucket does not have (S3 answers 404; `run` reports that as a missing object). */
function isAbsentConfiguration(e: unknown): boolean {
  return e instanceof MissingObjectError;
}

function sameRule(a: LifecycleRule, b: LifecycleRule): boolean {
  return (
    a.Status === b.Status &&
    (a.Filter?.Prefix ?? a.Prefix ?? '') === (b.Filter?.Prefix ?? '') &&
    a.AbortIncompleteMultipartUpload?.DaysAfterInitiation === b.AbortIncompleteMultipartUpload?.DaysAfterInitiation &&
    a.NoncurrentVersionExpiration?.NoncurrentDays === b.NoncurrentVersionExpiration?.NoncurrentDays &&
    (a.Expiration?.ExpiredObjectDeleteMarker ?? false) === (b.Expiration?.ExpiredObjectDeleteMarker ?? false)
  );
}

function describeRule(r: LifecycleRule): string {
  const scope = r.Filter?.Prefix ? `objects under ${r.Filter.Prefix}` : 'the whole bucket';
  if (r.AbortIncompleteMultipartUpload) return `abort multipart uploads unfinished after ${r.AbortIncompleteMultipartUpload.DaysAfterInitiation} day(s), ${scope}`;
  return `expire noncurrent versions ${r.NoncurrentVersionExpiration?.NoncurrentDays} days after they stop being current, and delete markers with nothing under them, ${scope}`;
}
