/**
 * @coffer/verify — restore drills and throwaway PostgreSQL clusters. A files
 * drill restores a backup into a fresh sandbox directory, then reads every
 * restored file back and re-derives its chunk ids with the repository's own
 * chunker and id key: the bytes on disk, not only the bytes in flight, must be
 * the bytes that were backed up. `PostgresSandbox` starts restored (or new)
 * data directories on loopback for checks and smoke queries.
 */
export { drillRestore, type DrillOptions, type DrillReport } from './drill.js';
export {
  PostgresSandbox,
  findPostgres,
  embeddedPostgres,
  serverUser,
  serverScratch,
  grantServerUserTraverse,
  runAsServerUser,
  freePort,
  type PostgresInstall,
  type SandboxOptions,
  type OsUser,
  type RunResult,
} from './postgres-sandbox.js';
export { RadosgwSandbox, radosgwMissing, type RadosgwOptions } from './radosgw-sandbox.js';
