/**
 * Moving traffic to the new primary, once it is fenced-for and promoted: a
 * DNS name (RFC 2136, `dns-update.ts`), a command (a load balancer's CLI), a
 * webhook (a global load balancer's API). The guard of the new primary runs
 * them in order after promotion, and again on later ticks until all have
 * succeeded in its epoch: a DNS server down at the moment of failover is
 * caught up with as soon as it answers.
 */
import { execFile } from 'node:child_process';
import { CutoverError, PostgresError } from '@coffer/engine';
import { pointName, type DnsUpdateTarget } from './dns-update.js';

export interface CutoverStep {
  /** For messages and the report: what it moves. */
  readonly describe: string;
  apply(node: string, epoch: number): Promise<void>;
}

/** Points a DNS name at the node's address. */
export class DnsCutover implements CutoverStep {
  readonly describe: string;
  constructor(
    private readonly target: DnsUpdateTarget,
    private readonly addresses: Readonly<Record<string, string>>,
  ) {
    this.describe = `DNS ${target.name} (via ${target.server}:${target.port ?? 53})`;
  }
  async apply(node: string): Promise<void> {
    const address = this.addresses[node];
    if (!address) throw new CutoverError(node, `no address for node ${node} (failover.nodes[].address)`);
    await pointName(this.target, address);
  }
}

/** Runs a command with COFFER_FAILOVER_NODE, COFFER_FAILOVER_ADDRESS and COFFER_FAILOVER_EPOCH set; it must exit 0. */
export class CommandCutover implements CutoverStep {
  readonly describe: string;
  constructor(
    private readonly argv: readonly string[],
    private readonly addresses: Readonly<Record<string, string>>,
    private readonly timeoutMs = 60_000,
  ) {
    this.describe = `command ${argv[0]}`;
  }
  async apply(node: string, epoch: number): Promise<void> {
    await runHook(this.argv, { COFFER_FAILOVER_NODE: node, COFFER_FAILOVER_ADDRESS: this.addresses[node] ?? '', COFFER_FAILOVER_EPOCH: String(epoch) }, this.timeoutMs, (detail) => new CutoverError(node, detail));
  }
}

/**
 * Runs an operator's command (argv, no shell) with `env` added to this
 * process's environment; resolves its standard output once it exits 0,
 * rejects with `fail(detail)` naming the command, how it ended and the end of
 * its standard error otherwise.
 */
export function runHook(argv: readonly string[], env: Readonly<Record<string, string>>, timeoutMs: number, fail: (detail: string) => Error): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(argv[0]!, argv.slice(1), { env: { ...process.env, ...env }, timeout: timeoutMs, maxBuffer: 16 << 20 }, (e, stdout, stderr) => {
      if (!e) return resolve(String(stdout));
      const how = e.killed ? `did not finish within ${timeoutMs} ms` : `exited ${e.code ?? e.signal}`;
      reject(fail(`${argv[0]} ${how}: ${String(stderr).trim().slice(-500)}`));
    });
  });
}

/**
 * The guard's `rejoinAfterSwitchover` from a node's rejoin command (the
 * policy's `failover.nodes[].rejoin`): run with COFFER_FAILOVER_NODE (this
 * node), COFFER_FAILOVER_PRIMARY (the new primary) and COFFER_FAILOVER_EPOCH
 * set; it makes the stopped server a standby of the primary and starts it
 * (`coffer failover rejoin …` and the server's start command, as its user).
 */
export function rejoinCommand(argv: readonly string[], node: string, timeoutMs = 600_000): (primary: string, epoch: number) => Promise<string> {
  return async (primary, epoch) => {
    const out = await runHook(argv, { COFFER_FAILOVER_NODE: node, COFFER_FAILOVER_PRIMARY: primary, COFFER_FAILOVER_EPOCH: String(epoch) }, timeoutMs, (detail) => new PostgresError('rejoin', detail));
    const last = out.trim().split('\n').pop();
    return `${argv[0]} exited 0${last ? ` (${last.slice(0, 200)})` : ''}`;
  };
}

/** POSTs {node, address, epoch} as JSON; any 2xx answer is success. */
export class WebhookCutover implements CutoverStep {
  readonly describe: string;
  constructor(
    private readonly url: string,
    private readonly addresses: Readonly<Record<string, string>>,
    private readonly bearer?: string,
    private readonly timeoutMs = 30_000,
  ) {
    // The URL's path and query may carry a token: only its origin is named.
    this.describe = `webhook ${new URL(url).origin}`;
  }
  async apply(node: string, epoch: number): Promise<void> {
    let r: Response;
    try {
      r = await fetch(this.url, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...(this.bearer ? { authorization: `Bearer ${this.bearer}` } : {}) },
        body: JSON.stringify({ node, address: this.addresses[node] ?? null, epoch }),
        signal: AbortSignal.timeout(this.timeoutMs),
      });
    } catch (e) {
      throw new CutoverError(node, `${this.describe}: ${(e as Error).message}`);
    }
    if (!r.ok) throw new CutoverError(node, `${this.describe} answered ${r.status}`);
  }
}
