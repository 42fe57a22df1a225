/**
 * @coffer/agent — the backup policy file, and the metrics of a run. A policy
 * names the clusters, the repositories and their mirrors, the jobs and their
 * schedules, retention, verification and alert thresholds; `loadPolicy`
 * reads one and reports every problem with its line and key,
 * `policyJsonSchema` gives editors its shape, and `nextRuns` says when each
 * scheduled job runs next. `writeJobMetrics` writes what one run did for
 * node_exporter's textfile collector.
 */
export { loadPolicy, parsePolicy, PolicyError, type PolicyProblem } from './policy/load.js';
export { policyJsonSchema } from './policy/json-schema.js';
export { nextRuns, type NextRun } from './policy/next-runs.js';
export { jobMetricsText, writeJobMetrics, type JobRun } from './metrics/job-metrics.js';
export { JOBS, policySchema, secretRef, type Policy, type Schedule, type SecretRef } from './policy/schema.js';
