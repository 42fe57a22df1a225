/**
 * Metrics of one job run, in Prometheus's text format, for node_exporter's
 * textfile collector (a one-shot `coffer` run from cron, a systemd timer or a
 * Kubernetes CronJob has no endpoint to scrape). The file is replaced whole
 * (written beside it, then renamed), and a failed run keeps the previous
 * file's time of the last success, so "backup too old" fires on the age of
 * the last good backup, not of the last attempt.
 */
import { readFile, rename, writeFile } from 'node:fs/promises';
import { Gauge, Registry } from 'prom-client';

export interface JobRun {
  /** The command, e.g. `backup`, `verify`, `expire`. */
  job: string;
  /** The repository's location (a path or s3://bucket/prefix; never a secret). */
  repository: string;
  /** The stanza a PostgreSQL job is about, if any. */
  stanza?: string;
  /** A mirror's destination location, if any. */
  target?: string;
  startedAt: Date;
  seconds: number;
  /** The exit status the run ended with (0: success). */
  exitStatus: number;
  /** Figures the job reported: metric name (without the `coffer_` prefix) → value. */
  figures: Readonly<Record<string, number>>;
}

/** What each figure a job may report means, for the HELP line. */
const FIGURES: Record<string, string> = {
  backup_bytes: 'Bytes of file content in the last backup',
  backup_new_bytes: 'Bytes the last backup added to the repository before compression',
  backup_stored_bytes: 'Bytes the last backup added to the store',
  backup_files: 'Files in the last backup',
  backup_damaged_pages: 'Pages that failed their checksum in the last backup (stored as read)',
  verify_ok: '1 when the last verification passed every check',
  verify_rto_seconds: "Measured recovery time of the last verification's newest backup (restore, start and WAL replay)",
  verify_read_bytes: 'Bytes of packs the last verification read whole',
  verify_failures: 'Failures the last verification found',
  drill_ok: '1 when the last drill passed: every check, and the RPO and RTO targets',
  drill_findings: 'Problems the last drill found (missed targets among them)',
  drill_rto_seconds: 'Recovery time the last drill measured',
  drill_rto_margin_seconds: 'RTO target minus the recovery time the last drill measured (negative: missed)',
  drill_rpo_seconds: 'Age of the newest commit the archive recovered when the last drill began (the data a loss then would have cost)',
  drill_commits_lost: 'Acknowledged commits missing after the last failover drill (a planned switchover must lose none)',
  expire_removed_backups: 'Backups the last expire removed',
  gc_deleted_bytes: 'Pack bytes the last garbage collection deleted',
  check_problems: 'Problems the last check found',
  mirror_copied_objects: 'Objects the last mirror run copied to its destination',
  mirror_copied_bytes: 'Bytes the last mirror run copied to its destination',
  mirror_problems: 'Objects the last mirror run could not copy',
  mirror_missing_objects: 'Objects the mirror destination lacks now (what a mirror run would copy)',
  mirror_missing_bytes: 'Bytes the mirror destination lacks now',
  mirror_lag_seconds: 'Age of the oldest object the mirror destination lacks (0: it holds everything)',
  mirror_conflicts: 'Objects the mirror destination holds with other sizes than the source',
  repository_bytes: 'Bytes the repository holds in the store, all objects',
  repository_pack_bytes: 'Bytes of packs (chunk data) in the repository',
  repository_reclaimable_bytes: 'Pack bytes garbage collection would free now',
  repository_backups: 'Backups in the repository',
  repository_leases: 'Leases held in the repository now (writers at work, a collection)',
  kms_keys: 'KMS keys that wrap the repository\'s data keys',
  kms_keys_unusable: 'Of those, keys KMS says are disabled, scheduled for deletion or unavailable',
  failover_epoch: 'The epoch the last failover began',
  failover_rto_seconds: "The last failover, from the old primary's last good probe to the first write on the new primary",
  failover_detected_seconds: 'The last failover: last good probe to the first "down" vote',
  failover_quorum_seconds: 'The last failover: first "down" vote to the next primary named',
  failover_fenced_seconds: "The last failover: next primary named to the old primary's lease ended (fenced)",
  failover_promoted_seconds: 'The last failover: old primary fenced to the new one promoted',
  failover_traffic_moved_seconds: 'The last failover: promoted to traffic moved (DNS, hooks)',
  failover_first_write_seconds: 'The last failover: traffic moved to the first write accepted',
  failover_rpo_bytes: "The last failover: WAL bytes between the old primary's last position seen and the new primary's promotion",
};

const LAST_SUCCESS = 'coffer_job_last_success_timestamp_seconds';
const LABELS = ['command', 'repository', 'stanza', 'target'] as const;

/**
 * The gauges of job runs in one registry: the agent keeps one for all its
 * jobs (each run replaces its own series), a one-shot run makes one for
 * itself. Labels: `command`, not `job` — Prometheus gives every scraped series
 * a `job` label of its own (the scrape job's); `target` is a mirror's
 * destination.
 */
export class JobGauges {
  private readonly gauges = new Map<string, Gauge<(typeof LABELS)[number]>>();
  constructor(private readonly registry: Registry) {}

  private gauge(name: string, help: string): Gauge<(typeof LABELS)[number]> {
    let g = this.gauges.get(name);
    if (!g) {
      g = new Gauge({ name, help, labelNames: LABELS, registers: [this.registry] });
      this.gauges.set(name, g);
    }
    return g;
  }

  /** Records `run`; `lastSuccess` (Unix seconds) is kept from before when this run failed. */
  record(run: JobRun, lastSuccess?: number): void {
    const labels = { command: run.job, repository: run.repository, stanza: run.stanza ?? '', target: run.target ?? '' };
    const end = run.startedAt.getTime() / 1000 + run.seconds;
    this.gauge('coffer_job_last_run_timestamp_seconds', 'When the last run of this job ended (Unix time)').set(labels, end);
    this.gauge('coffer_job_duration_seconds', 'How long the last run of this job took').set(labels, run.seconds);
    this.gauge('coffer_job_success', '1 when the last run of this job succeeded').set(labels, run.exitStatus === 0 ? 1 : 0);
    this.gauge('coffer_job_exit_status', 'The exit status of the last run of this job').set(labels, run.exitStatus);
    const success = run.exitStatus === 0 ? end : lastSuccess;
    if (success !== undefined) this.gauge(LAST_SUCCESS, 'When this job last succeeded (Unix time)').set(labels, success);
    for (const [name, value] of Object.entries(run.figures)) {
      const help = FIGURES[name];
      if (help === undefined || !Number.isFinite(value)) continue;
      this.gauge(`coffer_${name}`, help).set(labels, value);
    }
  }
}

/** The job's metrics as text. `previous` is the text the last run left (for its time of last success). */
export async function jobMetricsText(run: JobRun, previous?: string): Promise<string> {
  const registry = new Registry();
  new JobGauges(registry).record(run, previousValue(previous, LAST_SUCCESS));
  return registry.metrics();
}

function previousValue(text: string | undefined, name: string): number | undefined {
  const m = text && new RegExp(`^${name}\\{[^}]*\\} (\\S+)$`, 'm').exec(text);
  const v = m ? Number(m[1]) : NaN;
  return Number.isFinite(v) ? v : undefined;
}

/** Writes the run's metrics to `path` (replaced whole, never half-written). */
export async function writeJobMetrics(path: string, run: JobRun): Promise<void> {
  const previous = await readFile(path, 'utf8').catch(() => undefined);
  const tmp = `${path}.coffer-tmp`;
  await writeFile(tmp, await jobMetricsText(run, previous));
  await rename(tmp, path);
}
