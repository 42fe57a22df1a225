// The part of pg-copy-streams the WAL receiver uses (its published types predate COPY BOTH).
declare module 'pg-copy-streams' {
  import type { Duplex } from 'node:stream';
  import type { Submittable } from 'pg';
  /** A COPY BOTH exchange: readable CopyData payloads from the server, each write one CopyData to it. */
  export interface CopyBothQueryStream extends Duplex, Submittable {}
  export function both(text: string, options?: { alignOnCopyDataFrame?: boolean }): CopyBothQueryStream;
}
