/**
 * Fencing a real PostgreSQL server: the fence stops a primary in the middle
 * of writing and leaves it able to start only as a standby; the watchdog
 * fences at its deadline when its guard stops arming it — frozen by
 * SIGSTOP, or killed — and never before.
 */
import { spawn } from 'node:child_process';
import { access } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MemoryStore } from '@coffer/engine';
import { fenceServer, Guard, initFailover, monotonicMs, ObjectStoreDecisions, processesIn, Watchdog, type GuardEvent } from '@coffer/failover';
import { Cluster, debianInstall, pgScratch } from '../support/pg.js';

let work: { dir: string; cleanup: () => Promise<void> };
let cluster: Cluster;

beforeAll(async () => {
  work = await pgScratch('coffer-fence-');
  cluster = await Cluster.create(debianInstall(), work.dir);
  await cluster.start();
  await cluster.query('CREATE TABLE w (id serial PRIMARY KEY, at timestamptz DEFAULT now())');
}, 120_000);
afterAll(async () => {
  await cluster?.stop('immediate').catch(() => undefined);
  await work?.cleanup();
});

/** Starts the server again as it was (a primary) by removing the fence's standby.signal. */
async function restartAsPrimary(): Promise<void> {
  const { rm } = await import('node:fs/promises');
  await rm(join(cluster.data, 'standby.signal'), { force: true });
  await cluster.start();
}

/** Inserts in a loop until the server refuses; resolves the rows it committed and the error that ended it. */
function writeUntilRefused(): { stop: () => void; done: Promise<{ committed: number; error: string }> } {
  let stopped = false;
  const done = (async () => {
    let committed = 0;
    const client = await cluster.connectTo('postgres').catch((e: unknown) => e as Error);
    if (client instanceof Error) return { committed, error: `connect: ${client.message}` };
    client.on('error', () => undefined);
    try {
      while (!stopped) {
        await client.query('INSERT INTO w DEFAULT VALUES');
        committed++;
      }
      return { committed, error: '' };
    } catch (e) {
      return { committed, error: (e as Error).message };
    } finally {
      await client.end().catch(() => undefined);
    }
  })();
  return { stop: () => void (stopped = true), done };
}

/** Waits until nothing runs in the data directory (a fence ends with SIGKILL after its grace). */
async function gone(timeoutMs = 5000): Promise<number[]> {
  const until = Date.now() + timeoutMs;
  while (processesIn(cluster.data).length > 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
  return processesIn(cluster.data);
}

describe('fencing', () => {
  it('stops a primary that is committing, and it starts again only as a standby that refuses writes', async () => {
    const before = Number((await cluster.query<{ n: string }>('SELECT count(*) AS n FROM w'))[0]!.n);
    const writer = writeUntilRefused();
    await new Promise((r) => setTimeout(r, 300));
    const report = fenceServer(cluster.data);
    const { committed, error } = await writer.done;
    expect(report.wasRunning).toBe(true);
    expect(committed).toBeGreaterThan(0);
    expect(error).not.toBe('');
    expect(await gone()).toEqual([]);
    await access(join(cluster.data, 'standby.signal'));
    await cluster.stop().catch(() => undefined);
    await cluster.start();
    expect((await cluster.query<{ r: boolean }>('SELECT pg_is_in_recovery() AS r'))[0]!.r).toBe(true);
    await expect(cluster.query('INSERT INTO w DEFAULT VALUES')).rejects.toThrow(/read-only/);
    // Every commit the writer saw acknowledged is there (an immediate stop loses nothing committed).
    expect(Number((await cluster.query<{ n: string }>('SELECT count(*) AS n FROM w'))[0]!.n)).toBeGreaterThanOrEqual(before + committed);
    await cluster.stop();
    await restartAsPrimary();
  });

  it('the watchdog fences at its deadline, not before, and re-arming puts it off', async () => {
    const watchdog = await Watchdog.start();
    const fenced = new Promise<number>((resolve) => watchdog.onFenced(() => resolve(monotonicMs())));
    try {
      const began = monotonicMs();
      // Re-armed 600 ms ahead every 150 ms for 1.5 s: never fires.
      while (monotonicMs() - began < 1500) {
        await watchdog.arm(monotonicMs() + 600, cluster.data);
        await new Promise((r) => setTimeout(r, 150));
      }
      expect(cluster.running()).toBe(true);
      const deadline = monotonicMs() + 600;
      await watchdog.arm(deadline, cluster.data);
      const at = await fenced;
      expect(at).toBeGreaterThanOrEqual(deadline);
      expect(at - deadline).toBeLessThan(3000);
      expect(await gone()).toEqual([]);
    } finally {
      await watchdog.stop();
    }
    await cluster.stop().catch(() => undefined);
    await restartAsPrimary();
  });

  it('a guard whose watchdog is killed while it holds the lease fences the server itself', async () => {
    const decisions = new ObjectStoreDecisions(new MemoryStore(), 'main');
    await initFailover(decisions, 'main', 'db1');
    const watchdog = await Watchdog.start();
    const events: GuardEvent[] = [];
    const guard = new Guard({ decisions, node: 'db1', dataDir: cluster.data, conninfo: `postgresql://postgres@127.0.0.1:${cluster.port}/postgres`, observers: ['a'], watchdog, onEvent: (e) => events.push(e) });
    try {
      await guard.tick();
      expect(guard.holding).toBe(1);
      process.kill(watchdog.pid, 'SIGKILL');
      const until = Date.now() + 10_000;
      while (!events.some((e) => e.kind === 'fenced') && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
      expect(events.find((e) => e.kind === 'fenced')?.detail).toMatch(/the watchdog killed by SIGKILL: fenced by the guard itself/);
      expect(await gone()).toEqual([]);
      expect(guard.holding).toBeUndefined();
      // Its lease is released: the next primary need not wait it out.
      expect(await decisions.watchLease(1, { clock: () => performance.now() }).ended()).toBe(true);
    } finally {
      await guard.stop();
      await cluster.stop().catch(() => undefined);
      await restartAsPrimary();
    }
  });

  for (const how of ['SIGSTOP', 'SIGKILL'] as const) {
    it(`a guard ${how === 'SIGSTOP' ? 'frozen (SIGSTOP)' : 'killed (SIGKILL)'} leaves its watchdog to fence the server at the deadline`, async () => {
      const ttl = 1000;
      const guard = spawn(process.execPath, [join(import.meta.dirname, '../support/failover-arm.mjs'), cluster.data, String(ttl)], { stdio: ['ignore', 'pipe', 'inherit'] });
      try {
        const watchdogPid = Number(await new Promise<string>((resolve) => createInterface({ input: guard.stdout }).once('line', resolve)));
        expect(watchdogPid).toBeGreaterThan(0);
        const writer = writeUntilRefused();
        await new Promise((r) => setTimeout(r, 1500));
        expect(cluster.running()).toBe(true);
        const stoppedAt = monotonicMs();
        guard.kill(how);
        const { committed, error } = await writer.done;
        const refusedAfter = monotonicMs() - stoppedAt;
        expect(committed).toBeGreaterThan(0);
        expect(error).not.toBe('');
        // Refused within the time-to-live (it was armed at most ttl ahead) plus scheduling slack; gone within the fence's grace.
        expect(refusedAfter).toBeLessThan(ttl + 1000);
        expect(await gone()).toEqual([]);
        await access(join(cluster.data, 'standby.signal'));
        // The watchdog's work is done: it exits once its guard is gone.
        if (how === 'SIGKILL') {
          const until = Date.now() + 5000;
          while (Date.now() < until && (await access(`/proc/${watchdogPid}`).then(() => true, () => false))) await new Promise((r) => setTimeout(r, 50));
          expect(await access(`/proc/${watchdogPid}`).then(() => true, () => false)).toBe(false);
        }
      } finally {
        guard.kill('SIGKILL');
        await cluster.stop().catch(() => undefined);
        await restartAsPrimary();
      }
    });
  }
});
