/**
 * Each node as one look sees it — for `coffer failover status`: primary or
 * standby, its timeline and WAL position, whether it streams, and how far a
 * standby is behind the primary (received and replayed, in bytes). A node
 * that does not answer says why.
 */
import { lsnBytes } from './lsn.js';
import { standbyState, type ProbeTarget } from './health-probe.js';

export interface NodeState {
  node: string;
  ok: boolean;
  error?: string;
  role?: 'primary' | 'standby';
  timeline?: number;
  /** A primary's current WAL position; a standby's replayed one. */
  lsn?: string;
  receivedLsn?: string;
  streaming?: boolean;
  /** Bytes of the primary's WAL a standby has not received / not replayed (as of this look). */
  receiveLagBytes?: number;
  replayLagBytes?: number;
}

export async function nodeStates(nodes: readonly ({ name: string } & ProbeTarget)[]): Promise<NodeState[]> {
  const looks = await Promise.all(
    nodes.map(async (n): Promise<NodeState> => {
      try {
        const s = await standbyState(n);
        const lsn = s.inRecovery ? s.replayedLsn : s.currentLsn;
        return {
          node: n.name,
          ok: true,
          role: s.inRecovery ? 'standby' : 'primary',
          timeline: s.receivedTimeline ?? s.timeline,
          ...(lsn ? { lsn } : {}),
          ...(s.inRecovery && s.receivedLsn ? { receivedLsn: s.receivedLsn } : {}),
          ...(s.inRecovery ? { streaming: s.streaming } : {}),
        };
      } catch (e) {
        return { node: n.name, ok: false, error: (e as Error).message || String(e) };
      }
    }),
  );
  // Behind the primary that answered (one; with two, neither is a reference).
  const primaries = looks.filter((l) => l.role === 'primary' && l.lsn);
  const head = primaries.length === 1 ? lsnBytes(primaries[0]!.lsn!) : undefined;
  return looks.map((l) =>
    l.role === 'standby' && head !== undefined
      ? { ...l, ...(l.receivedLsn ? { receiveLagBytes: Math.max(0, head - lsnBytes(l.receivedLsn)) } : {}), ...(l.lsn ? { replayLagBytes: Math.max(0, head - lsnBytes(l.lsn)) } : {}) }
      : l,
  );
}
