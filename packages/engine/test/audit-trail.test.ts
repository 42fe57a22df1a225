/**
 * The audit trail: processes each append a chain of records; the trail reads
 * back whole and verified. Then one tampering, chosen at random — a record
 * deleted from the middle of a chain, a record another chain names deleted, a
 * record replaced by another one's bytes, a backup's record deleted — and
 * the trail reports it, naming the record or the backup.
 */
import fc from 'fast-check';
import { describe, expect, it, vi } from 'vitest';
import { AuditLog, backupFiles, LocalKeyProvider, MemoryStore, readAuditTrail, Repository, AUDIT_PREFIX, type ObjectInfo } from '@coffer/engine';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const provider = LocalKeyProvider.fromPassphrase('audit test');

describe('audit trail', () => {
  it('reads back verified, and reports any record deleted or replaced', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(fc.integer({ min: 1, max: 4 }), { minLength: 2, maxLength: 5 }), fc.constantFrom('middle', 'named', 'replaced'), fc.nat(), async (chains, tamper, pick) => {
        const store = new MemoryStore();
        const repo = await Repository.init(store, provider);
        for (const [i, n] of chains.entries()) {
          const log = new AuditLog();
          for (let k = 0; k < n; k++) await log.append(repo, { command: `job-${i}`, result: k % 3 === 2 ? 'failed' : 'ok', exitStatus: k % 3 === 2 ? 14 : 0, details: { step: k, names: ['a', 'b'] } });
          // Chains are named by the millisecond they begin: the next one begins later.
          await new Promise((r) => setTimeout(r, 2));
        }
        const whole = await readAuditTrail(repo);
        expect(whole.problems).toEqual([]);
        expect(whole.records.length).toBe(chains.reduce((a, b) => a + b, 0));
        expect(whole.chains).toBe(chains.length);
        // Every chain after the first names the newest record before it.
        expect(whole.records.filter((r) => r.seq === 0 && r.seen).length).toBe(chains.length - 1);
        const keys = whole.records.map((r) => r.key);
        let victim: string | undefined;
        if (tamper === 'middle') {
          // A record with a later one in its chain.
          const candidates = whole.records.filter((r) => whole.records.some((s) => s.chain === r.chain && s.seq > r.seq));
          if (candidates.length === 0) return;
          victim = candidates[pick % candidates.length]!.key;
          await store.delete(victim);
        } else if (tamper === 'named') {
          const named = whole.records.filter((r) => r.seen).map((r) => r.seen!.key);
          victim = named[pick % named.length]!;
          await store.delete(victim);
        } else {
          // Another record's bytes under this record's name (valid, authentic, but not this one).
          const a = keys[pick % keys.length]!;
          const b = keys[(pick + 1) % keys.length]!;
          const bytes = await store.get(b);
          await store.delete(a);
          await store.put(a, bytes);
          victim = a;
        }
        const after = await readAuditTrail(repo);
        expect(after.ok).toBe(false);
        const chainOf = (k: string) => k.slice(AUDIT_PREFIX.length, k.lastIndexOf('/'));
        expect(after.problems.some((p) => p.includes(victim!) || p.includes(chainOf(victim!)))).toBe(true);
      }),
      { numRuns: 15 },
    );
  });

  it("a backup's manifest names its record: deleting that record is reported with the backup", async () => {
    const dir = await mkdtemp(join(tmpdir(), 'coffer-audit-'));
    try {
      await writeFile(join(dir, 'f'), 'data');
      const repo = await Repository.init(new MemoryStore(), provider);
      const log = new AuditLog();
      const { key, manifest } = await backupFiles(repo, dir, { audit: log.next });
      expect(manifest.audit).toEqual(log.next);
      const recordKey = await log.append(repo, { command: 'backup', result: 'ok', exitStatus: 0, details: { backup: manifest.label } });
      expect((await readAuditTrail(repo)).ok).toBe(true);
      await repo.objects.delete(recordKey);
      const after = await readAuditTrail(repo);
      expect(after.problems).toEqual([expect.stringContaining(`backup ${manifest.label} (${key.slice(-64, -52)}): its audit record ${recordKey} is missing`)]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('a new chain names the newest other chain, listing only the span that holds one (its hour, day, month, year, then all)', async () => {
    /** A store that remembers the prefixes listed under audit/. */
    class ListedStore extends MemoryStore {
      readonly prefixes: string[] = [];
      override list(prefix: string): AsyncIterable<ObjectInfo> {
        if (prefix.startsWith(AUDIT_PREFIX)) this.prefixes.push(prefix.slice(AUDIT_PREFIX.length));
        return super.list(prefix);
      }
    }
    vi.useFakeTimers({ toFake: ['Date'] });
    try {
      const store = new ListedStore();
      const repo = await Repository.init(store, provider);
      const chainAt = async (iso: string) => {
        vi.setSystemTime(new Date(iso));
        const log = new AuditLog();
        store.prefixes.length = 0;
        const key = await log.append(repo, { command: 'job', result: 'ok', exitStatus: 0, details: {} });
        return { key, listed: [...store.prefixes] };
      };
      const old = await chainAt('2025-03-01T10:00:00.000Z');
      const first = await chainAt('2026-12-01T23:00:00.000Z');
      expect(first.listed).toEqual(['20261201T23', '20261201', '202612', '2026', '']);
      const morning = await chainAt('2026-12-02T06:10:00.000Z');
      expect(morning.listed).toEqual(['20261202T06', '20261202', '202612']);
      const later = await chainAt('2026-12-02T06:30:00.000Z');
      // Another chain began this hour: one listing, of this hour's chains.
      expect(later.listed).toEqual(['20261202T06']);
      const nextYear = await chainAt('2027-02-01T10:00:00.000Z');
      expect(nextYear.listed).toEqual(['20270201T10', '20270201', '202702', '2027', '']);
      const trail = await readAuditTrail(repo);
      expect(trail.problems).toEqual([]);
      const seen = new Map(trail.records.map((r) => [r.key, r.seen?.key]));
      expect(seen.get(old.key)).toBeUndefined();
      expect(seen.get(first.key)).toBe(old.key);
      expect(seen.get(morning.key)).toBe(first.key);
      expect(seen.get(later.key)).toBe(morning.key);
      expect(seen.get(nextYear.key)).toBe(later.key);
    } finally {
      vi.useRealTimers();
    }
  });
});
