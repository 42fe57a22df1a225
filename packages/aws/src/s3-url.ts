import { InvalidArgumentError } from '@coffer/engine';

export interface S3Location {
  bucket: string;
  /** Key prefix inside the bucket, without trailing slash ('' for the bucket root). */
  prefix: string;
}

/** Parses `s3://bucket/prefix` into bucket and key prefix. */
export function parseS3Url(url: string): S3Location {
  const m = /^s3:\/\/([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])(?:\/(.*))?$/.exec(url);
  if (!m) throw new InvalidArgumentError('repository', `${url} is not an s3://bucket/prefix URL`);
  const prefix = (m[2] ?? '').replace(/\/+$/, '');
  if (prefix && !/^[A-Za-z0-9._-]+(\/[A-Za-z0-9._-]+)*$/.test(prefix)) throw new InvalidArgumentError('repository', `${url}: the prefix may hold only letters, digits, '.', '_', '-' and single '/'`);
  return { bucket: m[1]!, prefix };
}
