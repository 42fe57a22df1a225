/**
 * Failsafe, the guard's side: asking every observer at once, over HTTP, for
 * a promise (a primary that cannot renew its lease) or to close an epoch (a
 * switchover's new primary, before it promotes). See `failsafe-promises.ts`
 * for what an observer grants and why that is safe.
 */
import { majority } from './quorum.js';
import type { FailsafeState } from './failsafe-promises.js';

export interface PromiseRound {
  /** Whether a majority of all configured observers granted. */
  granted: boolean;
  /** Observers that granted, sorted. */
  yes: string[];
  /** Why the others did not (refused, unreachable, timed out), by observer. */
  no: Record<string, string>;
}

export interface CloseRound {
  /** Observers that closed the epoch, sorted (a majority, or this throws). */
  closed: string[];
  /** The longest any of them said its promises on the epoch last (ms, on its clock). */
  remainingMs: number;
}

/** What a guard needs of the observers in failsafe mode. */
export interface FailsafeQuorum {
  /** Asks each observer to promise (epoch, node); resolves once a majority granted, or every observer answered or timed out. */
  promise(epoch: number, node: string): Promise<PromiseRound>;
  /** Asks each observer to close every epoch up to `epoch`; throws unless a majority did. */
  close(epoch: number): Promise<CloseRound>;
}

export class FailsafeMajorityError extends Error {
  constructor(
    readonly epoch: number,
    readonly no: Record<string, string>,
  ) {
    super(`a majority of observers did not close epoch ${epoch}: ${Object.entries(no).map(([o, why]) => `${o}: ${why}`).join('; ')}`);
    this.name = 'FailsafeMajorityError';
  }
}

export interface HttpFailsafeQuorumOptions {
  cluster: string;
  /** Each observer's `host:port`, by name: every configured observer. */
  endpoints: Readonly<Record<string, string>>;
  /** How long a request may take (a promise round's requests: a third of the lease's time-to-live). */
  timeoutMs: number;
  token?: string;
}

export class HttpFailsafeQuorum implements FailsafeQuorum {
  constructor(private readonly o: HttpFailsafeQuorumOptions) {}

  async promise(epoch: number, node: string): Promise<PromiseRound> {
    const names = Object.keys(this.o.endpoints);
    const needed = majority(names.length);
    const yes: string[] = [];
    const no: Record<string, string> = {};
    const abort = new AbortController();
    await new Promise<void>((resolve) => {
      let pending = names.length;
      const settle = () => {
        if (yes.length >= needed || --pending === 0) resolve();
      };
      for (const name of names) {
        void this.request(name, '/v1/promise', { cluster: this.o.cluster, epoch, node }, abort.signal).then(
          (body) => {
            if (body.granted === true) yes.push(name);
            else no[name] = typeof body.reason === 'string' ? body.reason : 'refused';
            settle();
          },
          (e: Error) => {
            no[name] = e.message;
            settle();
          },
        );
      }
    });
    // The rest are not needed: a promise granted after this is harmless (it only withholds that observer's votes).
    abort.abort();
    return { granted: yes.length >= needed, yes: yes.sort(), no };
  }

  async close(epoch: number): Promise<CloseRound> {
    const names = Object.keys(this.o.endpoints);
    const no: Record<string, string> = {};
    const closed: string[] = [];
    let remainingMs = 0;
    await Promise.all(
      names.map(async (name) => {
        try {
          const body = await this.request(name, '/v1/close', { cluster: this.o.cluster, epoch });
          if (typeof body.closed !== 'number' || body.closed < epoch || typeof body.remainingMs !== 'number') throw new Error(`unexpected answer ${JSON.stringify(body)}`);
          closed.push(name);
          remainingMs = Math.max(remainingMs, body.remainingMs);
        } catch (e) {
          no[name] = (e as Error).message;
        }
      }),
    );
    if (closed.length < majority(names.length)) throw new FailsafeMajorityError(epoch, no);
    return { closed: closed.sort(), remainingMs };
  }

  /** Each observer's state, or why it could not be read. */
  async states(): Promise<Record<string, FailsafeState | { error: string }>> {
    const names = Object.keys(this.o.endpoints);
    const out = await Promise.all(names.map(async (name) => [name, await this.request(name, '/v1/state', undefined).then((b) => b as unknown as FailsafeState, (e: Error) => ({ error: e.message }))] as const));
    return Object.fromEntries(out);
  }

  /** POSTs `body` as JSON (GET without one); the answer's JSON object. */
  private async request(name: string, path: string, body: unknown, signal?: AbortSignal): Promise<Record<string, unknown>> {
    const endpoint = this.o.endpoints[name]!;
    const res = await fetch(`http://${endpoint}${path}`, {
      method: body === undefined ? 'GET' : 'POST',
      headers: { ...(body === undefined ? {} : { 'content-type': 'application/json' }), ...(this.o.token !== undefined ? { authorization: `Bearer ${this.o.token}` } : {}) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      signal: signal ? AbortSignal.any([signal, AbortSignal.timeout(Math.max(1, Math.ceil(this.o.timeoutMs)))]) : AbortSignal.timeout(Math.max(1, Math.ceil(this.o.timeoutMs))),
    }).catch((e: Error) => {
      throw new Error(`${endpoint}: ${e.name === 'TimeoutError' ? `no answer within ${this.o.timeoutMs} ms` : ((e.cause as Error | undefined)?.message ?? e.message)}`);
    });
    const text = await res.text();
    if (res.status !== 200) throw new Error(`${endpoint}: HTTP ${res.status}: ${text.slice(0, 200)}`);
    return JSON.parse(text) as Record<string, unknown>;
  }
}
