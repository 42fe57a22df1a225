/**
 * The alerts that would fire now, worked out from the agent's own state the
 * way the Prometheus rules in deploy/prometheus work them out from its
 * metrics — for `coffer status`, which needs no Prometheus to answer.
 */
import type { Policy } from '../policy/schema.js';
import { thresholds } from '../metrics/agent-metrics.js';
import type { ReceiverStatus } from '../wal/receiver-supervisor.js';
import type { WalStatus } from '../wal/wal-watch.js';
import type { RepositoryLook } from './repository-looks.js';
import type { AgentState } from './state.js';

export interface Alert {
  /** The rule's name in deploy/prometheus/coffer-alerts.yml. */
  name: string;
  severity: 'critical' | 'warning';
  /** The job (`backup:main`) or cluster it is about. */
  about: string;
  summary: string;
}

const age = (seconds: number) => (seconds >= 7200 ? `${(seconds / 3600).toFixed(1)} h` : seconds >= 120 ? `${(seconds / 60).toFixed(1)} min` : `${seconds.toFixed(0)} s`);

export function alertsNow(policy: Policy, state: AgentState, wal: readonly WalStatus[], now: Date, looks: readonly RepositoryLook[] = [], receivers: readonly ReceiverStatus[] = []): Alert[] {
  const limits = thresholds(policy);
  const out: Alert[] = [];
  for (const [id, job] of Object.entries(state.jobs)) {
    const last = job.lastRun;
    if (last && !last.ok && !last.stopped) {
      const failed = last.steps.find((s) => s.exitStatus !== 0);
      out.push({ name: id.startsWith('verify:') ? 'CofferVerificationFailed' : id.startsWith('drill-verify:') ? 'CofferDrillFailed' : 'CofferJobFailed', severity: 'critical', about: id, summary: `the last run failed${failed ? ` (exit ${failed.exitStatus}${failed.error ? `: ${failed.error}` : ''})` : ''}` });
    }
    const sinceSuccess = job.lastSuccess ? (now.getTime() - Date.parse(job.lastSuccess)) / 1000 : undefined;
    if (id.startsWith('backup:') && sinceSuccess !== undefined && sinceSuccess > limits.backup_age) {
      out.push({ name: 'CofferBackupTooOld', severity: 'critical', about: id, summary: `no successful backup for ${age(sinceSuccess)}` });
    }
    // The nightly drill is a verification too.
    if ((id.startsWith('verify:') || id.startsWith('drill-verify:')) && sinceSuccess !== undefined && sinceSuccess > limits.verify_age) {
      out.push({ name: 'CofferVerificationTooOld', severity: 'warning', about: id, summary: `no passing verification for ${age(sinceSuccess)}` });
    }
  }
  for (const w of wal) {
    if (!w.ok) {
      out.push({ name: 'CofferClusterUnreachable', severity: 'critical', about: w.cluster, summary: `the cluster does not answer: ${w.error ?? 'no reason given'}` });
      continue;
    }
    if (w.archiving === false) out.push({ name: 'CofferArchivingDisabled', severity: 'critical', about: w.cluster, summary: 'archive_mode is off or no archive_command is set: no WAL reaches the repository' });
    if ((w.rpoSeconds ?? 0) > limits.rpo) out.push({ name: 'CofferRpoBreach', severity: 'critical', about: w.cluster, summary: `the oldest WAL not in the repository is ${age(w.rpoSeconds!)} old (RPO ${age(limits.rpo)})` });
    if ((w.archiveLagSeconds ?? 0) > limits.wal_archive_lag) out.push({ name: 'CofferWalArchiveLag', severity: 'warning', about: w.cluster, summary: `a complete WAL segment has waited ${age(w.archiveLagSeconds!)} to be archived (${w.readyFiles ?? 0} waiting)` });
    for (const r of w.replicas ?? []) {
      if (r.replayLagSeconds > limits.replica_lag) out.push({ name: 'CofferReplicaLag', severity: 'warning', about: `${w.cluster}/${r.name}`, summary: `standby ${r.name} is ${age(r.replayLagSeconds)} behind` });
    }
    const slot = w.receiverSlot;
    if (slot && (!slot.exists || slot.walStatus === 'lost')) {
      out.push({ name: 'CofferWalSlotLost', severity: 'critical', about: w.cluster, summary: slot.exists ? `PostgreSQL removed WAL slot ${slot.name} still needed (max_slot_wal_keep_size): the stream has a gap only archive_command can fill` : `the replication slot ${slot.name} does not exist` });
    }
    const streaming = (w.replicas ?? []).filter((r) => r.state === 'streaming').length;
    if (policy.clusters[w.cluster]?.standby && streaming === 0 && !w.standby) out.push({ name: 'CofferReplicationDisabled', severity: 'critical', about: w.cluster, summary: 'the policy names a standby, and none is streaming' });
  }
  for (const r of receivers) {
    if (!r.up) out.push({ name: 'CofferWalReceiverDown', severity: 'critical', about: r.cluster, summary: `coffer wal-receive is not streaming (${r.restarts} restart(s)${r.lastExit ? `, last ${r.lastExit}` : ''}${r.lastError ? `: ${r.lastError}` : ''})` });
  }
  for (const l of looks) {
    const about = l.mirror ? `${l.repository} → ${l.mirror}` : l.repository;
    if (!l.ok) out.push({ name: 'CofferRepositoryUnreachable', severity: 'critical', about, summary: `the agent cannot look at ${l.mirror ? `the mirror ${l.target}` : l.location} (exit ${l.exitStatus}${l.error ? `: ${l.error}` : ''})` });
    else if (l.mirror && (l.lagSeconds ?? 0) > limits.mirror_lag) out.push({ name: 'CofferMirrorBehind', severity: 'warning', about, summary: `${l.target} lacks ${l.missingObjects} objects (${l.missingBytes} bytes), the oldest written ${age(l.lagSeconds!)} ago` });
  }
  return out;
}
