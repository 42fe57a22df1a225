/**
 * @coffer/verify — restore drills and throwaway PostgreSQL clusters. A files
 * drill restores a backup into a fresh sandbox directory, then reads every
 * restored file back and re-derives its chunk ids with the repository's own
 * chunker and id key: the bytes on disk, not only the bytes in flight, must be
 * the bytes that were backed up. `PostgresSandbox` starts restored (or new)
 * data directories on loopback for checks and smoke queries. `verifyRun`
 * proves PostgreSQL backups: restored, recovered in a sandbox with a network
 * of its own, checked (amcheck, page checksums, smoke queries, the point
 * recovery reached), with the WAL chain verified and each phase timed.
 */
export { drillRestore, type DrillOptions, type DrillReport } from './drill.js';
export { verifyPostgresBackup, type PostgresVerifyOptions, type PostgresVerifyReport, type VerifyCheck, type VerifyPhase, type VerifyPhaseName, type VerifyTarget } from './verify-postgres.js';
export { verifyRun, backupsToVerify, chainFailures, type VerifyRunOptions, type VerifyRunReport } from './verify-run.js';
export { renderVerifyMarkdown, renderVerifySummary } from './verify-report.js';
export { removeSandbox } from './sandbox-removal.js';
export { fetchWalViaSocket, WalSocketServer, type WalServeOptions, type WalServeStats } from './wal-socket.js';
export { isolationProblem } from './isolation.js';
export type { SmokeQuery } from './smoke.js';
export {
  PostgresSandbox,
  findPostgres,
  findPostgresFor,
  postgresAt,
  runIsolated,
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
export {
  DEFAULT_DRILL_TARGETS,
  drillId,
  finishReport,
  postMortemOf,
  projectRto,
  renderDrillMarkdown,
  rpoAgainst,
  rtoAgainst,
  writeDrillReport,
  type DrillCheck,
  type DrillKind,
  type DrillPhase,
  type RecoveryDrillReport,
  type DrillRpo,
  type DrillRto,
  type DrillRtoProjection,
  type DrillTargets,
} from './drills/drill-report.js';
export { renderDrillTimeline } from './drills/drill-timeline.js';
export { verifyDrill, verifyDrillReport, type VerifyDrillOptions, type VerifyDrillResult } from './drills/drill-verify.js';
export { failoverDrill, type FailoverDrillNode, type FailoverDrillOptions } from './drills/drill-failover.js';
export { evacuateDrill, type EvacuateDrillOptions, type EvacuatePath } from './drills/drill-evacuate.js';
export type { ProbeNode } from './drills/probe-writer.js';
