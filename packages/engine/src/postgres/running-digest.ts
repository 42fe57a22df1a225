/**
 * The SHA-256 of a segment's bytes so far, kept running as they arrive: each
 * flush of a streamed prefix (every message, when synchronous) needs the
 * digest of the whole prefix, and hashing up to 16 MiB again each time would
 * cost more than the flush itself.
 */
import { createHash, type Hash } from 'node:crypto';

export class RunningDigest {
  private segment: string | undefined;
  private hashed = 0;
  private hash: Hash = createHash('sha256');

  /**
   * The SHA-256 (hex) of `bytes`, the first bytes of `segment`. The bytes a
   * previous call hashed for the same segment must not have changed (a
   * stream's bytes never do); another segment, or fewer bytes, starts over.
   */
  of(segment: string, bytes: Uint8Array): string {
    if (segment !== this.segment || bytes.length < this.hashed) {
      this.segment = segment;
      this.hashed = 0;
      this.hash = createHash('sha256');
    }
    if (bytes.length > this.hashed) this.hash.update(bytes.subarray(this.hashed));
    this.hashed = bytes.length;
    return this.hash.copy().digest('hex');
  }
}
