/**
 * Planned switchover (the weekly drill): name a standby primary of the next
 * epoch with reason "switchover". The old primary's guard then stops its
 * server cleanly — its walsenders hand every record up to the shutdown
 * checkpoint to the standbys before it exits — and records where that
 * checkpoint is; the named standby's guard promotes only once it has
 * received it, so no acknowledged commit is lost. `rejoin` then makes the old
 * primary a standby of the new one (pg_rewind when it diverged).
 */
import { execFile } from 'node:child_process';
import { access } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { InvalidArgumentError, PostgresError } from '@coffer/engine';
import type { DecisionBackend } from './decision-backend.js';
import type { LeaderRecord } from './decision-records.js';
import { standbyState } from './health-probe.js';
import { withClient } from './server-connection.js';
import { standbyConninfo, writeStandbyConfig } from './standby-config.js';
import type { FailoverNode } from './observer.js';

/** Names `target` primary of the next epoch, after checking it is a streaming standby. */
export async function switchover(decisions: DecisionBackend, nodes: readonly FailoverNode[], target: string, decidedBy = 'switchover'): Promise<LeaderRecord> {
  const current = await decisions.current();
  if (!current) throw new InvalidArgumentError('switchover', `${decisions.location} names no primary yet (coffer failover init)`);
  if (current.node === target) throw new InvalidArgumentError('--to', `${target} is the primary already (epoch ${current.epoch})`);
  const node = nodes.find((n) => n.name === target);
  if (!node) throw new InvalidArgumentError('--to', `${JSON.stringify(target)} is not one of the failover nodes (${nodes.map((n) => n.name).join(', ')})`);
  const state = await standbyState({ conninfo: node.conninfo, ...(node.password !== undefined ? { password: node.password } : {}) }).catch((e: Error) => {
    throw new PostgresError('switchover', `${target} cannot be reached: ${e.message}`);
  });
  if (!state.inRecovery || !state.streaming) throw new InvalidArgumentError('--to', `${target} is not a streaming standby now (${state.inRecovery ? 'not streaming' : 'not in recovery'}): a switchover to it could lose commits`);
  const outcome = await decisions.claim({
    format: 1,
    cluster: current.cluster,
    epoch: current.epoch + 1,
    node: target,
    reason: 'switchover',
    previous: current.node,
    decidedBy,
    votes: [],
    ...(state.receivedLsn ? { receivedLsn: state.receivedLsn } : {}),
    ...(state.replayedLsn ? { replayedLsn: state.replayedLsn } : {}),
    host: hostname(),
    pid: process.pid,
    writtenAt: new Date().toISOString(),
  });
  if (!outcome.won) throw new InvalidArgumentError('switchover', `epoch ${current.epoch + 1} was decided meanwhile: ${outcome.leader.node} (${outcome.leader.reason}, by ${outcome.leader.decidedBy})`);
  return outcome.leader;
}

/** Runs CHECKPOINT on the server behind `conninfo` (superuser or pg_checkpoint). */
export async function checkpoint(conninfo: string, password?: string): Promise<void> {
  try {
    // No query timeout: a checkpoint writes what it must, however long that takes.
    await withClient({ conninfo, ...(password !== undefined ? { password } : {}), connectTimeoutMs: 10_000, applicationName: 'coffer-failover' }, (client) => client.query('CHECKPOINT'));
  } catch (e) {
    throw new PostgresError('CHECKPOINT', `${(e as Error).message} (the role needs superuser or pg_checkpoint)`);
  }
}

export interface RejoinOptions {
  dataDir: string;
  /** PostgreSQL's server binaries (pg_rewind). */
  pgBin: string;
  /** The current primary, as pg_rewind reaches it (a superuser, or a role with the rights pg_rewind needs). */
  source: string;
  password?: string;
  /** The current primary as this server streams from it (default `source`); `primary_conninfo` is written from it, without password or database. */
  replication?: string;
  /** This node's name: the standby's application_name. */
  node: string;
}

/**
 * Makes a stopped old primary a standby of the current one: pg_rewind (it
 * needs data checksums or wal_log_hints; it runs crash recovery first on a
 * server that was fenced, PostgreSQL 13 and later), then primary_conninfo and
 * standby.signal written by `writeStandbyConfig` — not by pg_rewind's
 * --write-recovery-conf, which would copy the password it connected with into
 * postgresql.auto.conf. Start the server as usual afterwards. Resolves
 * whether anything had to be rewound.
 */
export async function rejoin(options: RejoinOptions): Promise<{ rewound: boolean; output: string }> {
  await access(join(options.dataDir, 'global', 'pg_control')).catch(() => {
    throw new InvalidArgumentError('--pgdata', `${options.dataDir} is not a PostgreSQL data directory`);
  });
  // pg_rewind reads the source's timeline from its control file, which a server promoted moments ago has not
  // updated until a checkpoint: without one it would take the new timeline for the old and rewind wrongly.
  await checkpoint(options.source, options.password);
  const output = await new Promise<string>((resolve, reject) => {
    execFile(
      join(options.pgBin, 'pg_rewind'),
      ['--target-pgdata', options.dataDir, '--source-server', options.source, '--progress'],
      { env: { ...process.env, ...(options.password !== undefined ? { PGPASSWORD: options.password } : {}) }, maxBuffer: 16 << 20 },
      (e, stdout, stderr) => (e ? reject(new PostgresError('pg_rewind', `${String(stderr).trim().split('\n').slice(-5).join('; ') || e.message}`)) : resolve(`${stdout}${stderr}`)),
    );
  });
  writeStandbyConfig(options.dataDir, standbyConninfo(options.replication ?? options.source, options.node));
  return { rewound: !/no rewind required/.test(output), output };
}
