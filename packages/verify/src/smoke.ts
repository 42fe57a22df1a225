/**
 * Smoke queries: application-level questions a restored database must
 * answer as expected ("at least this many orders", "yesterday's last order is
 * there"). Each runs in its own connection to its database. Without an
 * expectation the query's first value must be `true`, so a bound is written
 * in SQL itself: `SELECT count(*) >= 1000 FROM orders`.
 */
import type pg from 'pg';

export interface SmokeQuery {
  sql: string;
  /** Database to run in (default `postgres`). */
  database?: string;
  /** What the first value of the first row must be: equal to `equals`, or a number within `min`…`max`. */
  expect?: { equals?: string | number | boolean; min?: number; max?: number };
}

export interface SmokeResult {
  passed: number;
  failures: string[];
}

function judge(q: SmokeQuery, value: unknown): string | undefined {
  const e = q.expect;
  if (!e) return value === true ? undefined : `returned ${JSON.stringify(value)}, not true`;
  if (e.equals !== undefined && String(value) !== String(e.equals)) return `returned ${JSON.stringify(value)}, expected ${JSON.stringify(e.equals)}`;
  if (e.min !== undefined || e.max !== undefined) {
    const n = Number(value);
    if (value === null || Number.isNaN(n)) return `returned ${JSON.stringify(value)}, not a number`;
    if (e.min !== undefined && n < e.min) return `returned ${n}, below ${e.min}`;
    if (e.max !== undefined && n > e.max) return `returned ${n}, above ${e.max}`;
  }
  return undefined;
}

export async function runSmoke(queries: readonly SmokeQuery[], connect: (database: string) => Promise<pg.Client>): Promise<SmokeResult> {
  const result: SmokeResult = { passed: 0, failures: [] };
  for (const q of queries) {
    const db = q.database ?? 'postgres';
    const where = `${db}: ${JSON.stringify(q.sql.length > 120 ? `${q.sql.slice(0, 117)}...` : q.sql)}`;
    let problem: string | undefined;
    try {
      const c = await connect(db);
      try {
        const r = await c.query({ text: q.sql, rowMode: 'array' });
        const rows = (r.rows ?? []) as unknown[][];
        problem = rows.length === 0 ? 'returned no row' : judge(q, rows[0]![0]);
      } finally {
        await c.end().catch(() => undefined);
      }
    } catch (e) {
      problem = (e as Error).message;
    }
    if (problem) result.failures.push(`${where} ${problem}`);
    else result.passed++;
  }
  return result;
}
