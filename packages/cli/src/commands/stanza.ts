/** `coffer stanza create|upgrade|list`: PostgreSQL cluster identities in the repository. */
import { clusterIdentity, ensureStanza, listStanzas, upgradeStanza } from '@coffer/engine';
import { stanzaOf, type CliContext } from '../context.js';

export function register(ctx: CliContext): void {
  const { program, io, globals, openRepo, say } = ctx;
  const stanza = program.command('stanza').description('PostgreSQL cluster identities (stanzas) in the repository');

  stanza
    .command('create')
    .description("record the cluster's identity under --stanza (connects with the PG* environment or --db); backups and wal-push also do this on first use")
    .option('--db <connstring>', 'libpq connection string (default: PGHOST, PGPORT, PGUSER, PGDATABASE, PGPASSWORD)')
    .action(async (o: { db?: string }) => {
      const repo = await openRepo();
      const name = stanzaOf(globals(), io.env);
      const record = await ensureStanza(repo, name, await clusterIdentity(o.db));
      say(`stanza ${name}: system ${record.history[record.history.length - 1]!.systemIdentifier}`);
    });

  stanza
    .command('upgrade')
    .description("after pg_upgrade: record the cluster's new system identifier and version; older backups stay restorable")
    .option('--db <connstring>', 'libpq connection string (default: PGHOST, PGPORT, PGUSER, PGDATABASE, PGPASSWORD)')
    .action(async (o: { db?: string }) => {
      const repo = await openRepo();
      const name = stanzaOf(globals(), io.env);
      const { record, changed } = await upgradeStanza(repo, name, await clusterIdentity(o.db));
      const cur = record.history[record.history.length - 1]!;
      say(changed ? `stanza ${name}: now system ${cur.systemIdentifier} (PostgreSQL ${cur.major ?? '?'}), ${record.history.length} identities in its history` : `stanza ${name} already has system ${cur.systemIdentifier}`);
    });

  stanza
    .command('list')
    .description('stanzas and the history of each')
    .option('--json', 'print as JSON')
    .action(async (o: { json?: boolean }) => {
      const records = await listStanzas(await openRepo());
      if (o.json) return say(JSON.stringify(records, null, 2));
      if (records.length === 0) return say('no stanzas');
      for (const r of records) say(`${r.stanza}: ${r.history.map((h) => `system ${h.systemIdentifier} (PostgreSQL ${h.major ?? '?'}, ${h.reason} ${h.since})`).join(' → ')}`);
    });
}
