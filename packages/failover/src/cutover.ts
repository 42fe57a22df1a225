/**
 * Moving traffic to the new primary, once it is fenced-for and promoted: a
 * DNS name (RFC 2136, `dns-update.ts`), a command (a load balancer's CLI), a
 * webhook (a global load balancer's API). The guard of the new primary runs
 * them in order after promotion, and again on later ticks until all have
 * succeeded in its epoch: a DNS server down at the moment of failover is
 * caught up with as soon as it answers.
 */
import { execFile } from 'node:child_process';
import { CutoverError } from '@coffer/engine';
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
  apply(node: string, epoch: number): Promise<void> {
    return new Promise((resolve, reject) => {
      const env = { ...process.env, COFFER_FAILOVER_NODE: node, COFFER_FAILOVER_ADDRESS: this.addresses[node] ?? '', COFFER_FAILOVER_EPOCH: String(epoch) };
      execFile(this.argv[0]!, this.argv.slice(1), { env, timeout: this.timeoutMs }, (e, _stdout, stderr) => {
        if (!e) return resolve();
        const how = e.killed ? `did not finish within ${this.timeoutMs} ms` : `exited ${e.code ?? e.signal}`;
        reject(new CutoverError(node, `${this.argv[0]} ${how}: ${String(stderr).trim().slice(-500)}`));
      });
    });
  }
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
