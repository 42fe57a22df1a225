/**
 * The failover decision log's objects, all create-only in one decision store
 * (a bucket, or a prefix of one, that every observer and guard reaches):
 *
 *   failover/<cluster>/leaders/<epoch>                   who is primary in epoch N
 *   failover/<cluster>/epochs/<epoch>/votes/<observer>/<seq>   an observer's verdict on epoch N's primary
 *   failover/<cluster>/epochs/<epoch>/locks/…            the primary's lease in epoch N (engine lease records)
 *
 * Epochs count from 1 (`failover init`). The first writer of
 * `leaders/<N+1>` makes the decision; everyone else reads it. A vote's
 * sequence numbers count per observer: its newest record is its verdict now.
 *
 * Stored like lease records: magic ‖ SHA-256 of what follows ‖ JSON, not
 * sealed (nothing in them is secret, and a witness needs no repository keys).
 * No decision reads a time written in a record: times are for people.
 */
import * as z from 'zod/mini';
import { CorruptObjectError, decodeCarriedJson, encodeCarriedJson, InvalidArgumentError } from '@coffer/engine';

export const FAILOVER_PREFIX = 'failover/';
const LEADER_MAGIC = Buffer.from('CFL1');
const VOTE_MAGIC = Buffer.from('CFV1');

const NAME = /^[a-z0-9][a-z0-9-]{0,62}$/;

/** Checks a cluster, node or observer name: it becomes part of object keys. */
export function validateName(what: string, name: string): string {
  if (!NAME.test(name)) throw new InvalidArgumentError(what, `${JSON.stringify(name)}: lower-case letters, digits and "-", up to 63, not starting with "-"`);
  return name;
}

const pad = (n: number, width: number): string => String(n).padStart(width, '0');

export function leadersPrefix(cluster: string): string {
  return `${FAILOVER_PREFIX}${cluster}/leaders/`;
}

export function leaderKey(cluster: string, epoch: number): string {
  return `${leadersPrefix(cluster)}${pad(epoch, 10)}`;
}

export function parseLeaderKey(cluster: string, key: string): number | undefined {
  const m = /^(\d{10})$/.exec(key.slice(leadersPrefix(cluster).length));
  return key.startsWith(leadersPrefix(cluster)) && m ? Number(m[1]) : undefined;
}

/** Where epoch N's votes and lease live. */
export function epochPrefix(cluster: string, epoch: number): string {
  return `${FAILOVER_PREFIX}${cluster}/epochs/${pad(epoch, 10)}/`;
}

export function votesPrefix(cluster: string, epoch: number): string {
  return `${epochPrefix(cluster, epoch)}votes/`;
}

export function voteKey(cluster: string, epoch: number, observer: string, seq: number): string {
  return `${votesPrefix(cluster, epoch)}${observer}/${pad(seq, 8)}`;
}

export function parseVoteKey(cluster: string, epoch: number, key: string): { observer: string; seq: number } | undefined {
  const prefix = votesPrefix(cluster, epoch);
  if (!key.startsWith(prefix)) return undefined;
  const m = /^([a-z0-9][a-z0-9-]{0,62})\/(\d{8})$/.exec(key.slice(prefix.length));
  return m ? { observer: m[1]!, seq: Number(m[2]) } : undefined;
}

/** Why a leader was named. */
export type LeaderReason = 'initial' | 'failover' | 'switchover';

export interface LeaderRecord {
  format: 1;
  cluster: string;
  epoch: number;
  /** The node that is primary in this epoch. */
  node: string;
  reason: LeaderReason;
  /** The primary of the epoch before (absent for the first). */
  previous?: string;
  /** Who wrote this record: an observer, or the operator's command. */
  decidedBy: string;
  /** Observers whose "down" verdicts on the previous epoch's primary made the majority. */
  votes: string[];
  /** The standby's positions when chosen, for the report. */
  receivedLsn?: string;
  replayedLsn?: string;
  host: string;
  pid: number;
  /** Wall-clock time of writing, for people. */
  writtenAt: string;
}

export type Verdict = 'down' | 'up';

export interface VoteRecord {
  format: 1;
  cluster: string;
  epoch: number;
  observer: string;
  seq: number;
  /** The observer's view of the epoch's primary: down after its misses, up again after a good probe. */
  verdict: Verdict;
  /** Consecutive probes that failed when it voted. */
  misses: number;
  /** The last probe's failure, or what it saw. */
  detail: string;
  /** The primary's last WAL position this observer's probes saw (for the report's RPO). */
  primaryLsn?: string;
  /** When this observer's last good probe of the primary was (wall clock, for the report). */
  lastHealthyAt?: string;
  host: string;
  pid: number;
  writtenAt: string;
}

const name = z.string().check(z.regex(NAME, 'expected a name of lower-case letters, digits and "-"'));
const epoch = z.int().check(z.positive());
const leaderSchema = z.object({
  format: z.literal(1),
  cluster: name,
  epoch,
  node: name,
  reason: z.enum(['initial', 'failover', 'switchover']),
  previous: z.optional(name),
  decidedBy: z.string(),
  votes: z.array(name),
  receivedLsn: z.optional(z.string()),
  replayedLsn: z.optional(z.string()),
  host: z.string(),
  pid: z.int(),
  writtenAt: z.string(),
});
const voteSchema = z.object({
  format: z.literal(1),
  cluster: name,
  epoch,
  observer: name,
  seq: z.int().check(z.nonnegative()),
  verdict: z.enum(['down', 'up']),
  misses: z.int().check(z.nonnegative()),
  detail: z.string(),
  primaryLsn: z.optional(z.string()),
  lastHealthyAt: z.optional(z.string()),
  host: z.string(),
  pid: z.int(),
  writtenAt: z.string(),
});

/** Where a primary that stepped down cleanly for a switchover says where its last record (the shutdown checkpoint) is. */
export function handoverKey(cluster: string, epoch: number): string {
  return `${epochPrefix(cluster, epoch)}handover`;
}

export function reportKey(cluster: string, epoch: number): string {
  return `${FAILOVER_PREFIX}${cluster}/reports/${pad(epoch, 10)}`;
}

export function encodeLeader(record: LeaderRecord): Buffer {
  return encodeCarriedJson(LEADER_MAGIC, record);
}

export function encodeVote(record: VoteRecord): Buffer {
  return encodeCarriedJson(VOTE_MAGIC, record);
}

/** Decodes the leader record stored under `key`, which must be the key of its own cluster and epoch. */
export function decodeLeader(key: string, bytes: Uint8Array): LeaderRecord {
  const record = decodeCarriedJson(key, bytes, LEADER_MAGIC, 'failover leader record', leaderSchema) as LeaderRecord;
  if (leaderKey(record.cluster, record.epoch) !== key) throw new CorruptObjectError(key, `holds the leader of ${record.cluster} epoch ${record.epoch}`);
  return record;
}

/** Decodes the vote stored under `key`, which must be the key of its own cluster, epoch, observer and number. */
export function decodeVote(key: string, bytes: Uint8Array): VoteRecord {
  const record = decodeCarriedJson(key, bytes, VOTE_MAGIC, 'failover vote', voteSchema) as VoteRecord;
  if (voteKey(record.cluster, record.epoch, record.observer, record.seq) !== key) throw new CorruptObjectError(key, `holds ${record.observer}'s vote ${record.seq} on ${record.cluster} epoch ${record.epoch}`);
  return record;
}
