/** Naming the first primary: epoch 1 of a cluster's decision log. */
import { hostname } from 'node:os';
import { InvalidArgumentError } from '@coffer/engine';
import type { DecisionBackend } from './decision-backend.js';
import { validateName, type LeaderRecord } from './decision-records.js';

/** Writes epoch 1 naming `node`; refuses when the cluster already has a leader (a second init must not reset the epochs). */
export async function initFailover(decisions: DecisionBackend, cluster: string, node: string, decidedBy = 'init'): Promise<LeaderRecord> {
  validateName('failover node', node);
  const current = await decisions.current();
  if (current) throw new InvalidArgumentError('failover init', `${decisions.location} already names ${current.node} primary in epoch ${current.epoch}`);
  const outcome = await decisions.claim({ format: 1, cluster, epoch: 1, node, reason: 'initial', decidedBy, votes: [], host: hostname(), pid: process.pid, writtenAt: new Date().toISOString() });
  if (!outcome.won) throw new InvalidArgumentError('failover init', `${decisions.location} already names ${outcome.leader.node} primary in epoch 1`);
  return outcome.leader;
}
