/**
 * Retries for AWS calls. The SDK's own retry strategy is turned off (it keeps a
 * retry quota that drains under a steady error rate, after which every failure
 * is final); instead each request, including the reading of its response body,
 * is retried here with capped exponential backoff and full jitter, which
 * spreads retries of many clients apart.
 *
 * Retried: throttling (429, SlowDown…), server errors (5xx), request timeouts,
 * bodies damaged in transit (BadDigest: the server refused our checksum) or cut
 * short, and connection failures (reset, refused, timed out). Everything else
 * (4xx: not found, precondition failed, access denied…) is an answer, not a
 * fault, and returns at once.
 */

export interface RetryOptions {
  /** Tries in all, the first included (default 10). */
  attempts?: number;
  /** First backoff ceiling in ms (default 50); doubles per try. */
  baseDelayMs?: number;
  /** Largest backoff ceiling in ms (default 5000). */
  maxDelayMs?: number;
}

const THROTTLING = new Set(['SlowDown', 'Throttling', 'ThrottlingException', 'ThrottledException', 'RequestLimitExceeded', 'TooManyRequestsException', 'RequestThrottled', 'RequestThrottledException']);
const TRANSIENT = new Set(['RequestTimeout', 'RequestTimeoutException', 'InternalError', 'ServiceUnavailable', 'BadDigest', 'XAmzContentSHA256Mismatch', 'TimeoutError', 'IncompleteBody', 'TruncatedBody', 'KMSInternalException', 'DependencyTimeoutException']);
const NETWORK_CODES = new Set(['ECONNRESET', 'ECONNREFUSED', 'ECONNABORTED', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN', 'ERR_STREAM_PREMATURE_CLOSE', 'UND_ERR_SOCKET']);

interface AwsLikeError {
  name?: string;
  code?: string;
  message?: string;
  $metadata?: { httpStatusCode?: number };
  $retryable?: unknown;
  cause?: unknown;
}

export function httpStatusOf(e: unknown): number | undefined {
  return (e as AwsLikeError | undefined)?.$metadata?.httpStatusCode;
}

/** Whether `e` is a fault worth retrying rather than a definite answer. */
export function isRetryable(e: unknown): boolean {
  const err = e as AwsLikeError | undefined;
  if (!err || typeof err !== 'object') return false;
  if (err.name && (THROTTLING.has(err.name) || TRANSIENT.has(err.name))) return true;
  const status = httpStatusOf(err);
  if (status !== undefined) return status >= 500 || status === 429 || status === 408;
  if (err.code && NETWORK_CODES.has(err.code)) return true;
  if (err.$retryable) return true;
  if (/socket hang up|ECONNRESET|premature close|aborted|other side closed|EPIPE/i.test(err.message ?? '')) return true;
  return err.cause !== undefined && err.cause !== e && isRetryable(err.cause);
}

/** A short description of an AWS or network error, safe for messages (no request data). */
export function describeAwsError(e: unknown): string {
  const err = e as AwsLikeError | undefined;
  const status = httpStatusOf(e);
  const name = err?.name && err.name !== 'Error' ? err.name : err?.code;
  return [name, status ? `HTTP ${status}` : undefined, err?.message].filter(Boolean).join(': ');
}

export async function withRetry<T>(fn: () => Promise<T>, options: RetryOptions = {}, onRetry?: (e: unknown, attempt: number) => void): Promise<T> {
  const attempts = options.attempts ?? 10;
  const base = options.baseDelayMs ?? 50;
  const cap = options.maxDelayMs ?? 5000;
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn();
    } catch (e) {
      if (attempt >= attempts || !isRetryable(e)) throw e;
      onRetry?.(e, attempt);
      const ceiling = Math.min(cap, base * 2 ** (attempt - 1));
      await new Promise((r) => setTimeout(r, Math.random() * ceiling));
    }
  }
}
