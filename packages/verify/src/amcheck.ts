/**
 * amcheck on every database of a sandbox: each table and materialized view
 * with `verify_heapam` (TOAST included), each valid B-tree index with
 * `bt_index_check(…, heapallindexed => true)` — every heap tuple must be
 * found in the index, which is what catches a heap block damaged in a way
 * its page checksum cannot see. The extension is created where missing
 * (the sandbox is thrown away). Findings name database, relation and block.
 */
import type pg from 'pg';

export interface AmcheckResult {
  databases: number;
  relations: number;
  indexes: number;
  failures: string[];
}

type Connect = (database: string) => Promise<pg.Client>;

export async function amcheckAll(admin: pg.Client, connect: Connect): Promise<AmcheckResult> {
  const dbs = (await admin.query<{ datname: string }>(`SELECT datname FROM pg_database WHERE datallowconn ORDER BY datname`)).rows.map((r) => r.datname);
  const result: AmcheckResult = { databases: dbs.length, relations: 0, indexes: 0, failures: [] };
  for (const db of dbs) {
    const c = await connect(db);
    try {
      await checkDatabase(c, db, result);
    } finally {
      await c.end().catch(() => undefined);
    }
  }
  return result;
}

async function checkDatabase(c: pg.Client, db: string, result: AmcheckResult): Promise<void> {
  // The restored configuration may limit statements or forbid writes; neither applies to a check.
  await c.query(`SET statement_timeout = 0; SET lock_timeout = 0; SET default_transaction_read_only = off`);
  try {
    await c.query(`CREATE EXTENSION IF NOT EXISTS amcheck`);
  } catch (e) {
    result.failures.push(`${db}: amcheck is not available (${(e as Error).message}): install the server's contrib modules`);
    return;
  }
  // Functions called schema-qualified: the extension may live in any schema.
  const [{ schema }] = (await c.query<{ schema: string }>(`SELECT n.nspname AS schema FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'amcheck'`)).rows as [{ schema: string }];
  const fn = (name: string) => `${quoteIdent(schema)}.${name}`;
  const heaps = await c.query<{ oid: number; name: string }>(
    `SELECT c.oid, format('%I.%I', n.nspname, c.relname) AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE c.relkind IN ('r', 'm') AND c.relpersistence <> 't' ORDER BY c.oid`,
  );
  for (const h of heaps.rows) {
    result.relations++;
    try {
      const rows = await c.query<{ blkno: string | null; offnum: number | null; attnum: number | null; msg: string }>(`SELECT blkno, offnum, attnum, msg FROM ${fn('verify_heapam')}($1::regclass, check_toast => true) LIMIT 20`, [h.oid]);
      for (const r of rows.rows) result.failures.push(`${db}: table ${h.name}${r.blkno !== null ? ` block ${r.blkno}` : ''}${r.offnum !== null ? ` item ${r.offnum}` : ''}${r.attnum !== null ? ` column ${r.attnum}` : ''}: ${r.msg}`);
    } catch (e) {
      result.failures.push(`${db}: table ${h.name}: ${(e as Error).message}`);
    }
  }
  const indexes = await c.query<{ oid: number; name: string }>(
    `SELECT c.oid, format('%I.%I', n.nspname, c.relname) AS name FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
     JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_am am ON am.oid = c.relam
     WHERE am.amname = 'btree' AND i.indisvalid AND i.indisready AND c.relpersistence <> 't' ORDER BY c.oid`,
  );
  for (const i of indexes.rows) {
    result.indexes++;
    try {
      await c.query(`SELECT ${fn('bt_index_check')}($1::regclass, true)`, [i.oid]);
    } catch (e) {
      result.failures.push(`${db}: index ${i.name}: ${(e as Error).message}`);
    }
  }
}

function quoteIdent(s: string): string {
  return `"${s.replace(/"/g, '""')}"`;
}
