/**
 * The drills' client: it commits numbered rows to whichever node is primary
 * of the moment (a fixed one, or as the decision log names it), reconnecting
 * as an application would, and remembers each commit acknowledged — when,
 * on which node, at which WAL position. What was acknowledged is what a drill
 * measures loss against.
 */
import { postgresClientSettings } from '@coffer/engine';
import pg from 'pg';

export interface ProbeNode {
  name: string;
  /** A connection to the node's server (a database the drill may create its probe table in). */
  conninfo: string;
  password?: string;
}

export const PROBE_TABLE = 'coffer_drill_probe';

export interface Ack {
  id: number;
  /** Seconds from the drill's start. */
  at: number;
  node: string;
  /** WAL insert position right after the commit (`X/Y`). */
  lsn: string;
}

/** A step of a drill that did not complete; its message says which and why. */
export class StepFailed extends Error {}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

export function connect(node: ProbeNode, timeoutMs: number): pg.Client {
  const client = new pg.Client({
    ...postgresClientSettings(node.conninfo),
    ...(node.password !== undefined ? { password: node.password } : {}),
    connectionTimeoutMillis: timeoutMs,
    query_timeout: 10_000,
    application_name: 'coffer-drill',
  });
  client.on('error', () => undefined);
  return client;
}

export async function query<T extends pg.QueryResultRow>(node: ProbeNode, text: string, values: unknown[] = []): Promise<T[]> {
  const client = connect(node, 5000);
  try {
    await client.connect();
    return (await client.query<T>(text, values)).rows;
  } finally {
    await client.end().catch(() => undefined);
  }
}

export async function createProbeTable(node: ProbeNode): Promise<void> {
  await query(node, `CREATE TABLE IF NOT EXISTS ${PROBE_TABLE} (run text NOT NULL, id bigint NOT NULL, node text NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp(), PRIMARY KEY (run, id))`);
}

/** Removes a run's rows, and the table when no other run's are left. */
export async function dropProbeRun(node: ProbeNode, run: string): Promise<void> {
  await query(node, `DELETE FROM ${PROBE_TABLE} WHERE run = $1`, [run]);
  const [left] = await query<{ n: string }>(node, `SELECT count(*) AS n FROM ${PROBE_TABLE}`);
  if (left?.n === '0') await query(node, `DROP TABLE IF EXISTS ${PROBE_TABLE}`).catch(() => undefined);
}

/** The ids of a run's rows a node holds. */
export async function probeRows(node: ProbeNode, run: string): Promise<Set<number>> {
  return new Set((await query<{ id: string }>(node, `SELECT id::text FROM ${PROBE_TABLE} WHERE run = $1`, [run])).map((r) => Number(r.id)));
}

export class ProbeWriter {
  readonly acked: Ack[] = [];
  /** Seconds from the drill's start of the first failed commit after the last acknowledged one, if any. */
  firstFailure: number | undefined;
  private stopped = false;
  private next = 1;
  private running: Promise<void> | undefined;

  constructor(
    private readonly nodes: readonly ProbeNode[],
    private readonly primary: () => Promise<string>,
    private readonly run: string,
    private readonly t0: number,
  ) {}

  start(): void {
    this.running = (async () => {
      while (!this.stopped) {
        let client: pg.Client | undefined;
        try {
          const name = await this.primary();
          const node = this.nodes.find((n) => n.name === name)!;
          client = connect(node, 2000);
          await client.connect();
          while (!this.stopped) {
            const id = this.next++;
            const r = await client.query<{ lsn: string }>(`INSERT INTO ${PROBE_TABLE} (run, id, node) VALUES ($1, $2, $3) RETURNING pg_current_wal_insert_lsn()::text AS lsn`, [this.run, id, name]);
            this.acked.push({ id, at: (performance.now() - this.t0) / 1000, node: name, lsn: r.rows[0]!.lsn });
            this.firstFailure = undefined;
            await sleep(10);
          }
        } catch {
          // The primary stopping, a standby not yet promoted, a decision not yet read: find the primary again.
          this.firstFailure ??= (performance.now() - this.t0) / 1000;
          await sleep(50);
        } finally {
          await client?.end().catch(() => undefined);
        }
      }
    })();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.running;
  }

  /** Whether a commit on `node` came after the `since`-th acknowledgement. */
  wroteOn(node: string, since: number): boolean {
    for (let i = this.acked.length - 1; i >= since; i--) if (this.acked[i]!.node === node) return true;
    return false;
  }

  /** The longest wait between two acknowledged commits from the `from`-th on: what a client saw of a switch. */
  longestGap(from: number, to = this.acked.length): number {
    let gap = 0;
    for (let i = Math.max(1, from); i < to; i++) gap = Math.max(gap, this.acked[i]!.at - this.acked[i - 1]!.at);
    return gap;
  }
}

/** A drill's phases as they run: each timed from the drill's start, told as it begins, failed with its reason. */
export class DrillSteps {
  readonly phases: { name: string; startSeconds: number; seconds: number; ok: boolean; detail?: string }[] = [];
  readonly t0 = performance.now();

  constructor(
    private readonly timeoutMs: number,
    private readonly say: (line: string) => void,
  ) {}

  /** Seconds since the drill began. */
  now(): number {
    return (performance.now() - this.t0) / 1000;
  }

  async phase(name: string, work: () => Promise<string | undefined>): Promise<void> {
    const at = this.now();
    this.say(`${name}…`);
    try {
      const detail = await work();
      this.phases.push({ name, startSeconds: at, seconds: this.now() - at, ok: true, ...(detail ? { detail } : {}) });
    } catch (e) {
      this.phases.push({ name, startSeconds: at, seconds: this.now() - at, ok: false, detail: (e as Error).message });
      throw e;
    }
  }

  /** Polls `done` until it answers true (a rejection counts as not yet), at most the step timeout. */
  async waitFor(what: string, done: () => Promise<boolean>): Promise<void> {
    const began = performance.now();
    const until = began + this.timeoutMs;
    let told = began;
    for (;;) {
      if (await done().catch(() => false)) return;
      if (performance.now() > until) throw new StepFailed(`${what}: not within ${(this.timeoutMs / 1000).toFixed(0)} s`);
      // Said every half minute: someone watching a drill that waits wants to know for what.
      if (performance.now() - told >= 30_000) {
        told = performance.now();
        this.say(`still waiting for ${what} (${((told - began) / 1000).toFixed(0)} s)`);
      }
      await sleep(200);
    }
  }
}
