/** `coffer status`: what the agent of a policy is doing — jobs, next runs, last results, RPO, alerts that would fire. */
import { humanBytes } from '../progress.js';
import { type CliContext } from '../context.js';
import { policyPath, POLICY_OPTION } from './policy.js';

export function register(ctx: CliContext): void {
  const { program, io, say } = ctx;
  program
    .command('status')
    .description("what the policy's agent is doing: each job's state, next run, last result and last success; each cluster's RPO, archive lag and standbys; the alerts that would fire")
    .option(...POLICY_OPTION)
    .option('--json', 'print it as JSON')
    .action(async (o: { policy?: string; json?: boolean }) => {
      const { DEFAULT_STATE_DIR, loadPolicy, readAgentStatus } = await import('@coffer/agent');
      const policy = await loadPolicy(policyPath(o, io.env));
      const { running, status } = await readAgentStatus(policy.agent?.stateDir ?? DEFAULT_STATE_DIR);
      if (o.json) return say(JSON.stringify({ running, ...status }, null, 2));
      say(running ? `agent running (pid ${status.pid}) since ${status.startedAt}${status.listen ? `, metrics on http://${status.listen}/metrics` : ''}` : `agent NOT running: last status from ${status.updatedAt}${status.stoppedAt ? ` (stopped ${status.stoppedAt})` : ' (it did not stop cleanly)'}`);
      say('');
      say('job                      state    last run                          last success          next run');
      for (const j of status.jobs) {
        const last = j.lastRun ? `${j.lastRun.ok ? 'ok' : 'FAILED'} ${j.lastRun.endedAt.slice(0, 19)}Z${j.lastRun.tries > 1 ? ` (${j.lastRun.tries} tries)` : ''}` : '-';
        say(`${j.id.padEnd(24)} ${j.state.padEnd(8)} ${last.padEnd(33)} ${(j.lastSuccess ? j.lastSuccess.slice(0, 19) + 'Z' : '-').padEnd(21)} ${j.next ? j.next.slice(0, 19) + 'Z' : '-'}`);
      }
      for (const w of status.wal) {
        say('');
        if (!w.ok) {
          say(`WAL ${w.cluster}: the cluster does not answer: ${w.error}`);
          continue;
        }
        say(`WAL ${w.cluster} (stanza ${w.stanza}): RPO ${(w.rpoSeconds ?? 0).toFixed(0)} s, archive lag ${(w.archiveLagSeconds ?? 0).toFixed(0)} s, ${humanBytes(w.unarchivedBytes ?? 0)} not yet archived, ${w.readyFiles ?? 0} .ready, pg_wal ${humanBytes(w.pgWalBytes ?? 0)}, ${w.archiveFailures ?? 0} archive failures${w.archiving ? '' : ', ARCHIVING OFF'}`);
        for (const r of w.replicas ?? []) say(`  standby ${r.name}: ${r.state}, replay lag ${r.replayLagSeconds.toFixed(1)} s (${humanBytes(r.replayLagBytes)})`);
        const slot = w.receiverSlot;
        const receiver = (status.receivers ?? []).find((r) => r.cluster === w.cluster);
        if (slot || receiver) {
          const state = receiver ? (receiver.up ? `streaming (pid ${receiver.pid})` : `NOT STREAMING${receiver.lastExit ? ` (last ${receiver.lastExit})` : ''}`) : '-';
          const held = slot ? (slot.exists ? `slot ${slot.name} holds ${humanBytes(slot.retainedBytes ?? 0)}${slot.walStatus === 'lost' ? ', WAL LOST' : ''}` : `slot ${slot.name} MISSING`) : '';
          say(`  receiver: ${state}, ${receiver?.restarts ?? 0} restart(s)${slot?.streamedThrough ? `, durable to ${slot.streamedThrough}` : ''}${held ? `; ${held}` : ''}`);
        }
      }
      say('');
      if (status.alerts.length === 0) say('no alert would fire');
      for (const a of status.alerts) say(`ALERT ${a.name} (${a.severity}) ${a.about}: ${a.summary}`);
    });
}
