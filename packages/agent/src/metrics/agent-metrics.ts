/**
 * The agent's `/metrics`: every job's last run (the same series a one-shot
 * run writes to its textfile, so one set of alert rules serves both), the
 * WAL archive of each watched cluster (RPO, archive lag, backlog, replicas),
 * the policy's alert thresholds (so the rules compare against the policy, not
 * against numbers copied into them), and the agent's own process.
 */
import { collectDefaultMetrics, Counter, Gauge, Registry } from 'prom-client';
import type { S3Usage } from '../jobs/run-job.js';
import type { Policy } from '../policy/schema.js';
import type { ReceiverStatus } from '../wal/receiver-supervisor.js';
import type { WalStatus } from '../wal/wal-watch.js';
import { JobGauges, type JobRun } from './job-metrics.js';
import { FailoverGauges } from './failover-metrics.js';
import type { FailoverLook } from '../agent/failover-looks.js';

/** Thresholds when the policy gives none: the seeds' RPO of 15 minutes and replica lag of 900 s, a daily backup, a verification every other day, a mirror an hour behind. */
export const DEFAULT_THRESHOLDS = { rpo: 900, wal_archive_lag: 300, replica_lag: 900, backup_age: 26 * 3600, verify_age: 50 * 3600, mirror_lag: 3600 } as const;

export function thresholds(policy: Policy): Record<keyof typeof DEFAULT_THRESHOLDS, number> {
  const a = policy.alerts ?? {};
  return {
    rpo: a.rpoSeconds ?? DEFAULT_THRESHOLDS.rpo,
    wal_archive_lag: a.walArchiveLagSeconds ?? DEFAULT_THRESHOLDS.wal_archive_lag,
    replica_lag: a.replicaLagSeconds ?? DEFAULT_THRESHOLDS.replica_lag,
    backup_age: a.backupAgeHours !== undefined ? a.backupAgeHours * 3600 : DEFAULT_THRESHOLDS.backup_age,
    verify_age: a.verifyAgeHours !== undefined ? a.verifyAgeHours * 3600 : DEFAULT_THRESHOLDS.verify_age,
    mirror_lag: a.mirrorLagSeconds ?? DEFAULT_THRESHOLDS.mirror_lag,
  };
}

const WAL_LABELS = ['cluster', 'stanza', 'repository'] as const;
type WalLabel = (typeof WAL_LABELS)[number];

export class AgentMetrics {
  readonly registry = new Registry();
  private readonly jobs = new JobGauges(this.registry);
  private readonly failover = new FailoverGauges(this.registry);
  private readonly wal: Record<string, Gauge<WalLabel>>;
  private readonly replicaLag: Gauge<'cluster' | 'standby'>;
  private readonly replicaLagBytes: Gauge<'cluster' | 'standby'>;
  private readonly receiverUp: Gauge<'cluster' | 'slot'>;
  private readonly receiverRestarts: Counter<'cluster' | 'slot'>;
  private readonly restartsSeen = new Map<string, number>();
  private readonly slotRetained: Gauge<'cluster' | 'slot'>;
  private readonly slotLost: Gauge<'cluster' | 'slot'>;
  private readonly running: Gauge<'command' | 'about'>;
  private readonly nextRun: Gauge<'command' | 'about'>;
  private readonly s3Requests: Counter<'location' | 'operation'>;
  private readonly s3Retries: Counter<'location'>;
  private readonly s3Sent: Counter<'location'>;
  private readonly s3Received: Counter<'location'>;

  constructor(policy: Policy) {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry, prefix: 'coffer_agent_' });
    new Gauge({ name: 'coffer_agent_start_time_seconds', help: 'When this agent started (Unix time)', registers }).setToCurrentTime();
    const threshold = new Gauge({ name: 'coffer_alert_threshold_seconds', help: "The policy's alert thresholds (`alerts`), for the alert rules to compare with", labelNames: ['alert'], registers });
    for (const [alert, seconds] of Object.entries(thresholds(policy))) threshold.set({ alert }, seconds);
    const wal = (name: string, help: string) => new Gauge({ name, help, labelNames: WAL_LABELS, registers });
    this.wal = {
      up: wal('coffer_wal_watch_up', '1 when the cluster answered the last look at its WAL'),
      checked: wal('coffer_wal_last_check_timestamp_seconds', 'When the cluster was last looked at (Unix time)'),
      rpo: wal('coffer_wal_rpo_seconds', 'Age of the oldest WAL byte not yet in the repository (0: the repository holds everything written)'),
      lag: wal('coffer_wal_archive_lag_seconds', 'Age of the oldest complete WAL segment not yet in the repository'),
      unarchived: wal('coffer_wal_unarchived_bytes', 'WAL bytes written past the end of what the repository holds'),
      ready: wal('coffer_wal_ready_files', 'Segments waiting for archive_command (.ready files)'),
      pgWal: wal('coffer_wal_pg_wal_bytes', 'Bytes in pg_wal'),
      failures: wal('coffer_wal_archive_failures', 'Failed archive_command calls PostgreSQL counted (pg_stat_archiver.failed_count)'),
      archiving: wal('coffer_wal_archiving_enabled', '1 when archive_mode is on and an archive command is set'),
      streaming: wal('coffer_replicas_streaming', 'Standbys streaming from the cluster (pg_stat_replication, state streaming)'),
      expected: wal('coffer_replicas_expected', 'Standbys the policy expects (clusters.NAME.standby)'),
    };
    this.replicaLag = new Gauge({ name: 'coffer_replica_lag_seconds', help: "A standby's replay lag (pg_stat_replication.replay_lag; 0 when caught up)", labelNames: ['cluster', 'standby'], registers });
    this.replicaLagBytes = new Gauge({ name: 'coffer_replica_lag_bytes', help: "WAL bytes a standby has still to replay", labelNames: ['cluster', 'standby'], registers });
    this.receiverUp = new Gauge({ name: 'coffer_wal_receiver_up', help: "1 while the cluster's coffer wal-receive runs and streams", labelNames: ['cluster', 'slot'], registers });
    this.receiverRestarts = new Counter({ name: 'coffer_wal_receiver_restarts_total', help: 'Times the agent started coffer wal-receive again after it ended', labelNames: ['cluster', 'slot'], registers });
    this.slotRetained = new Gauge({ name: 'coffer_wal_slot_retained_bytes', help: "WAL the receiver's replication slot holds the server to (pg_wal grows by it while no receiver reads)", labelNames: ['cluster', 'slot'], registers });
    this.slotLost = new Gauge({ name: 'coffer_wal_slot_lost', help: "1 when the receiver's slot is missing or PostgreSQL removed WAL it needed (wal_status lost): the stream has a gap only archive_command can fill", labelNames: ['cluster', 'slot'], registers });
    this.running = new Gauge({ name: 'coffer_agent_job_running', help: '1 while a run of this job is under way', labelNames: ['command', 'about'], registers });
    this.nextRun = new Gauge({ name: 'coffer_agent_job_next_run_timestamp_seconds', help: 'When this job runs next (Unix time)', labelNames: ['command', 'about'], registers });
    this.s3Requests = new Counter({ name: 'coffer_s3_requests_total', help: "S3 requests the agent's jobs made, by store and operation", labelNames: ['location', 'operation'], registers });
    this.s3Retries = new Counter({ name: 'coffer_s3_retries_total', help: "S3 requests the agent's jobs retried (throttling, timeouts, 5xx)", labelNames: ['location'], registers });
    this.s3Sent = new Counter({ name: 'coffer_s3_sent_bytes_total', help: "Bytes the agent's jobs sent to S3", labelNames: ['location'], registers });
    this.s3Received = new Counter({ name: 'coffer_s3_received_bytes_total', help: "Bytes the agent's jobs received from S3", labelNames: ['location'], registers });
    this.policy = policy;
  }

  /** Adds what a job's run asked of its S3 stores. */
  recordS3(usage: readonly S3Usage[]): void {
    for (const u of usage) {
      for (const [operation, n] of Object.entries(u.byOperation)) if (n > 0) this.s3Requests.inc({ location: u.location, operation }, n);
      if (u.retries > 0) this.s3Retries.inc({ location: u.location }, u.retries);
      if (u.bytesSent > 0) this.s3Sent.inc({ location: u.location }, u.bytesSent);
      if (u.bytesReceived > 0) this.s3Received.inc({ location: u.location }, u.bytesReceived);
    }
  }

  private readonly policy: Policy;
  private readonly standbys = new Map<string, string[]>();

  recordRun(run: JobRun, lastSuccess?: number): void {
    this.jobs.record(run, lastSuccess);
  }

  setRunning(command: string, about: string, running: boolean): void {
    this.running.set({ command, about }, running ? 1 : 0);
  }

  setNextRun(command: string, about: string, at: Date | undefined): void {
    if (at) this.nextRun.set({ command, about }, at.getTime() / 1000);
    else this.nextRun.remove({ command, about });
  }

  /** The agent's last look at failover (the policy's failover.cluster labels it). */
  recordFailover(look: FailoverLook): void {
    this.failover.record(this.policy.failover?.cluster ?? '', look);
  }

  recordReceiver(s: ReceiverStatus): void {
    const labels = { cluster: s.cluster, slot: s.slot };
    this.receiverUp.set(labels, s.up ? 1 : 0);
    const seen = this.restartsSeen.get(s.cluster) ?? 0;
    this.receiverRestarts.inc(labels, s.restarts - seen);
    this.restartsSeen.set(s.cluster, s.restarts);
  }

  recordWal(s: WalStatus): void {
    const labels = { cluster: s.cluster, stanza: s.stanza, repository: s.repository };
    this.wal.up!.set(labels, s.ok ? 1 : 0);
    this.wal.checked!.set(labels, Date.parse(s.checkedAt) / 1000);
    this.wal.expected!.set(labels, this.policy.clusters[s.cluster]?.standby ? 1 : 0);
    if (!s.ok) return;
    const set = (g: string, v: number | undefined) => v !== undefined && this.wal[g]!.set(labels, v);
    set('rpo', s.rpoSeconds);
    set('lag', s.archiveLagSeconds);
    set('unarchived', s.unarchivedBytes);
    set('ready', s.readyFiles);
    set('pgWal', s.pgWalBytes);
    set('failures', s.archiveFailures);
    set('archiving', s.archiving === undefined ? undefined : s.archiving ? 1 : 0);
    set('streaming', (s.replicas ?? []).filter((r) => r.state === 'streaming').length);
    const slot = s.receiverSlot;
    if (slot) {
      const l = { cluster: s.cluster, slot: slot.name };
      this.slotLost.set(l, !slot.exists || slot.walStatus === 'lost' ? 1 : 0);
      if (slot.retainedBytes !== undefined) this.slotRetained.set(l, slot.retainedBytes);
    }
    // A standby that went away leaves no stale lag behind.
    for (const gone of this.standbys.get(s.cluster) ?? []) {
      if (!(s.replicas ?? []).some((r) => r.name === gone)) {
        this.replicaLag.remove({ cluster: s.cluster, standby: gone });
        this.replicaLagBytes.remove({ cluster: s.cluster, standby: gone });
      }
    }
    this.standbys.set(s.cluster, (s.replicas ?? []).map((r) => r.name));
    for (const r of s.replicas ?? []) {
      this.replicaLag.set({ cluster: s.cluster, standby: r.name }, r.replayLagSeconds);
      this.replicaLagBytes.set({ cluster: s.cluster, standby: r.name }, r.replayLagBytes);
    }
  }

  text(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}
