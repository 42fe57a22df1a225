/** `coffer_failover_*` gauges from the agent's failover look (see `agent/failover-looks.ts`). */
import { Gauge, type Registry } from 'prom-client';
import type { FailoverLook } from '../agent/failover-looks.js';

export class FailoverGauges {
  private readonly up: Gauge<'cluster'>;
  private readonly epoch: Gauge<'cluster'>;
  private readonly named: Gauge<'cluster' | 'node'>;
  private readonly votesDown: Gauge<'cluster'>;
  private readonly votesNeeded: Gauge<'cluster'>;
  private readonly leaseHeld: Gauge<'cluster'>;
  private readonly nodeUp: Gauge<'cluster' | 'node'>;
  private readonly nodePrimary: Gauge<'cluster' | 'node'>;
  private readonly streaming: Gauge<'cluster' | 'node'>;
  private readonly receiveLag: Gauge<'cluster' | 'node'>;
  private readonly replayLag: Gauge<'cluster' | 'node'>;
  private readonly observerAnswering: Gauge<'cluster' | 'observer'>;
  private readonly promiseSeconds: Gauge<'cluster' | 'observer'>;

  constructor(registry: Registry) {
    const registers = [registry];
    const g = <L extends string>(name: string, help: string, labelNames: L[]) => new Gauge<L>({ name, help, labelNames, registers });
    this.up = g('coffer_failover_look_up', "1 when the agent's last look at the decision log and the nodes succeeded", ['cluster']);
    this.epoch = g('coffer_failover_epoch', 'The newest epoch in the decision log', ['cluster']);
    this.named = g('coffer_failover_primary_named', '1 for the node the newest epoch names primary, 0 for the others', ['cluster', 'node']);
    this.votesDown = g('coffer_failover_votes_down', "Observers whose newest vote on the epoch's primary is down", ['cluster']);
    this.votesNeeded = g('coffer_failover_votes_needed', 'Down votes that make a majority', ['cluster']);
    this.leaseHeld = g('coffer_failover_lease_held', "1 while the epoch's primary holds its lease", ['cluster']);
    this.nodeUp = g('coffer_failover_node_up', '1 when the node answered the last look', ['cluster', 'node']);
    this.nodePrimary = g('coffer_failover_node_primary', '1 when the node answers as a primary (not in recovery)', ['cluster', 'node']);
    this.streaming = g('coffer_failover_standby_streaming', "1 when a standby's WAL receiver streams", ['cluster', 'node']);
    this.receiveLag = g('coffer_failover_standby_receive_lag_bytes', "WAL bytes of the primary a standby has not received", ['cluster', 'node']);
    this.replayLag = g('coffer_failover_standby_replay_lag_bytes', 'WAL bytes of the primary a standby has not replayed', ['cluster', 'node']);
    this.observerAnswering = g('coffer_failover_observer_answering', "1 when the observer's failsafe endpoint answered the last look (failover.failsafe)", ['cluster', 'observer']);
    this.promiseSeconds = g('coffer_failover_observer_promise_seconds', 'How long the failsafe promise the observer gave the primary lasts, in seconds; above 0 the primary cannot reach the decision store and runs on promises', ['cluster', 'observer']);
  }

  record(cluster: string, look: FailoverLook): void {
    this.up.set({ cluster }, look.ok ? 1 : 0);
    if (!look.ok) return;
    if (look.epoch !== undefined) this.epoch.set({ cluster }, look.epoch);
    if (look.votesDown !== undefined) this.votesDown.set({ cluster }, look.votesDown);
    if (look.votesNeeded !== undefined) this.votesNeeded.set({ cluster }, look.votesNeeded);
    this.leaseHeld.set({ cluster }, look.lease === 'held' ? 1 : 0);
    for (const o of look.failsafe ?? []) {
      const labels = { cluster, observer: o.observer };
      this.observerAnswering.set(labels, o.ok ? 1 : 0);
      if (o.promiseSeconds === undefined) this.promiseSeconds.remove(labels);
      else this.promiseSeconds.set(labels, o.promiseSeconds);
    }
    for (const n of look.nodes) {
      const labels = { cluster, node: n.node };
      this.named.set(labels, look.primary === n.node ? 1 : 0);
      this.nodeUp.set(labels, n.ok ? 1 : 0);
      this.nodePrimary.set(labels, n.role === 'primary' ? 1 : 0);
      // A standby's figures only: a primary (or a node that did not answer) has none, and keeps none from before.
      const standby = n.ok && n.role === 'standby';
      for (const [gauge, v] of [
        [this.streaming, standby ? (n.streaming ? 1 : 0) : undefined],
        [this.receiveLag, standby ? n.receiveLagBytes : undefined],
        [this.replayLag, standby ? n.replayLagBytes : undefined],
      ] as const) {
        if (v === undefined) gauge.remove(labels);
        else gauge.set(labels, v);
      }
    }
  }
}
