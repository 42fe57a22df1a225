/**
 * @coffer/agent — the backup policy file, and what runs it. A policy names
 * the clusters, the repositories and their mirrors, the jobs and their
 * schedules, retention, verification and alert thresholds; `loadPolicy`
 * reads one and reports every problem with its line and key,
 * `policyJsonSchema` gives editors its shape, and `nextRuns` says when each
 * scheduled job runs next. `jobSteps` turns a job into `coffer` command
 * lines and `runJob` runs one (`coffer run`); `Agent` runs them all on their
 * schedules, watches the WAL archive and serves metrics (`coffer agent`);
 * `readAgentStatus` reads what it is doing (`coffer status`).
 * `writeJobMetrics` writes what one run did for node_exporter's textfile
 * collector. `ObserverRole` and `GuardRole` start the failover roles a host
 * runs from the policy's failover section, and `policyFailoverDrill` and
 * `policyEvacuateDrill` run the policy's drills.
 */
export { loadPolicy, parsePolicy, PolicyError, type PolicyProblem } from './policy/load.js';
export { policyJsonSchema } from './policy/json-schema.js';
export { nextRuns, type NextRun } from './policy/next-runs.js';
export { jobMetricsText, writeJobMetrics, JobGauges, type JobRun } from './metrics/job-metrics.js';
export { AgentMetrics, DEFAULT_THRESHOLDS, thresholds } from './metrics/agent-metrics.js';
export { JOBS, policySchema, secretRef, type ClusterPolicy, type FailoverPolicy, type Job, type Policy, type RepositoryPolicy, type Schedule, type SecretRef } from './policy/schema.js';
export { jobId, jobSteps, readSecret, walReceiveStep, walEndStep, type JobSpec, type JobStep, type StepLabels } from './jobs/job-steps.js';
export { retryable, runJob, runStep, type JobOutcome, type RunJobOptions, type S3Usage, type StepResult } from './jobs/run-job.js';
export { Agent, DEFAULT_STATE_DIR, type AgentOptions, type AgentStatus, type JobStatus } from './agent/agent.js';
export { alertsNow, type Alert } from './agent/alerts.js';
export { RepositoryLooks, type RepositoryLook, type RepositoryLooksOptions } from './agent/repository-looks.js';
export { FailoverLooks, type FailoverLook, type FailoverNodeLook, type FailsafeObserverLook, type FailoverLooksOptions } from './agent/failover-looks.js';
export { createLogger, type LogSettings, type Logger } from './agent/log.js';
export { readAgentStatus, type AgentStatusReport } from './agent/status-file.js';
export type { AgentState, JobRecord, StepRecord } from './agent/state.js';
export { RpoTracker, type RpoFigures } from './wal/rpo-tracker.js';
export { archivedEndOf, WalWatch, type ReceiverSlotStatus, type ReplicaStatus, type WalStatus, type WalWatchTarget } from './wal/wal-watch.js';
export { ReceiverSupervisor, type ReceiverStatus, type SupervisorOptions } from './wal/receiver-supervisor.js';
export { dnsUpdateSettings, failoverSettings, type FailoverSettings, type FailoverNodeSettings, type CutoverSettings } from './failover/failover-settings.js';
export { backupAfterPromotion, type BackupAfterPromotionOptions } from './failover/backup-after-promotion.js';
export { replayTargetFromRepository, type ReplayTarget, type ReplayTargetOptions } from './failover/replay-target.js';
export { failoverNode, failoverOverview, rejoinFromPolicy, GuardRole, ObserverRole, type FailoverOverview, type GuardRoleOptions, type PolicyRejoinOptions, type RoleEvent } from './failover/failover-roles.js';
export { drillReportsDir, drillTargets, policyEvacuateDrill, policyFailoverDrill, type PolicyDrillOverrides, type PolicyEvacuateDrillOptions, type PolicyFailoverDrillOptions } from './drills/policy-drills.js';
