/**
 * Reading and changing stanzas (see `format/stanza-record.ts`). A stanza is
 * created by the first backup or WAL file that names it, with that cluster's
 * identity; from then on WAL and backups of another system identifier are
 * refused, until `upgradeStanza` records the cluster's new identity after
 * `pg_upgrade`.
 */
import { asBuffer } from '../bytes.js';
import { MissingObjectError, ObjectConflictError, StanzaMismatchError } from '../errors.js';
import { currentIdentity, parseStanzaKey, STANZA_PREFIX, stanzaKey, validateStanzaName, type StanzaIdentity, type StanzaRecord } from '../format/stanza-record.js';
import { decodeStanzaRecord, encodeStanzaRecord } from '../repository/sealed-records.js';
import type { Repository } from '../repository/repository.js';
import { collectList } from '../store/object-store.js';

export const DEFAULT_STANZA = 'main';

/** The stanza's current record, or undefined when no backup or WAL has named it yet. */
export async function readStanza(repo: Repository, name: string): Promise<StanzaRecord | undefined> {
  validateStanzaName(name);
  const keys = (await repo.objects.list(`${STANZA_PREFIX}${name}/`)).map((o) => o.key).filter((k) => parseStanzaKey(k)).sort();
  const last = keys[keys.length - 1];
  if (!last) return undefined;
  return decodeStanzaRecord(repo, last, asBuffer(await repo.objects.get(last)));
}

/** Every stanza's current record. */
export async function listStanzas(repo: Repository): Promise<StanzaRecord[]> {
  const latest = new Map<string, string>();
  for (const { key } of await repo.objects.list(STANZA_PREFIX)) {
    const p = parseStanzaKey(key);
    if (p && (latest.get(p.stanza) ?? '') < key) latest.set(p.stanza, key);
  }
  const out: StanzaRecord[] = [];
  for (const key of [...latest.values()].sort()) out.push(decodeStanzaRecord(repo, key, asBuffer(await repo.objects.get(key))));
  return out;
}

/** Whether `identity` is (compatible with) the stanza's current cluster; a reason when not. */
function mismatch(record: StanzaRecord, identity: StanzaIdentity): string | undefined {
  const cur = currentIdentity(record);
  if (cur.systemIdentifier !== identity.systemIdentifier) {
    const older = record.history.slice(0, -1).some((h) => h.systemIdentifier === identity.systemIdentifier);
    return older
      ? `system identifier ${identity.systemIdentifier} is this stanza's cluster from before its last upgrade (now ${cur.systemIdentifier}); the old cluster must not archive into it`
      : `belongs to the cluster with system identifier ${cur.systemIdentifier}, not ${identity.systemIdentifier}: use another --stanza for this cluster, or run 'coffer stanza upgrade' after pg_upgrade`;
  }
  if (cur.walSegmentSize !== undefined && identity.walSegmentSize !== undefined && cur.walSegmentSize !== identity.walSegmentSize) {
    return `WAL segment size ${identity.walSegmentSize} differs from the stanza's ${cur.walSegmentSize}`;
  }
  if (cur.major !== undefined && identity.major !== undefined && cur.major !== identity.major) {
    return `PostgreSQL ${identity.major} differs from the stanza's ${cur.major}: run 'coffer stanza upgrade' after pg_upgrade`;
  }
  return undefined;
}

async function writeRecord(repo: Repository, record: StanzaRecord): Promise<'created' | 'raced'> {
  try {
    await repo.objects.put(stanzaKey(record.stanza, record.seq), encodeStanzaRecord(repo, record));
    return 'created';
  } catch (e) {
    // Another process wrote this number first (sealing is randomised, so its bytes differ): read what it wrote.
    if (e instanceof ObjectConflictError) return 'raced';
    throw e;
  }
}

/**
 * The stanza for a cluster of `identity`: created with it when absent,
 * refused with `StanzaMismatchError` when it holds another cluster.
 */
export async function ensureStanza(repo: Repository, name: string, identity: StanzaIdentity): Promise<StanzaRecord> {
  for (let attempt = 0; attempt < 5; attempt++) {
    const record = await readStanza(repo, name);
    if (record) {
      const why = mismatch(record, identity);
      if (why) throw new StanzaMismatchError(name, why);
      return record;
    }
    const created: StanzaRecord = { format: 2, stanza: name, seq: 1, history: [{ ...identity, since: new Date().toISOString(), reason: 'create' }] };
    if ((await writeRecord(repo, created)) === 'created') return created;
  }
  throw new StanzaMismatchError(name, 'could not settle its record: other processes keep changing it');
}

/** The stanza, which must exist. */
export async function requireStanza(repo: Repository, name: string): Promise<StanzaRecord> {
  const record = await readStanza(repo, name);
  if (!record) throw new MissingObjectError(`${STANZA_PREFIX}${name}/`, `stanza ${JSON.stringify(name)} does not exist in this repository (a backup or archived WAL segment creates it)`);
  return record;
}

/**
 * Records the cluster's new identity after `pg_upgrade` (new system
 * identifier, new major version). Older backups and WAL stay reachable under
 * their own system identifier. Returns the record, unchanged when the
 * identity is already current.
 */
export async function upgradeStanza(repo: Repository, name: string, identity: StanzaIdentity): Promise<{ record: StanzaRecord; changed: boolean }> {
  for (let attempt = 0; attempt < 5; attempt++) {
    const record = await readStanza(repo, name);
    if (!record) return { record: await ensureStanza(repo, name, identity), changed: true };
    if (!mismatch(record, identity)) return { record, changed: false };
    const next: StanzaRecord = { ...record, seq: record.seq + 1, history: [...record.history, { ...identity, since: new Date().toISOString(), reason: 'upgrade' }] };
    if ((await writeRecord(repo, next)) === 'created') return { record: next, changed: true };
  }
  throw new StanzaMismatchError(name, 'could not settle its record: other processes keep changing it');
}

/** Whether `systemIdentifier` is, or was, this stanza's cluster. */
export function stanzaHasSystem(record: StanzaRecord, systemIdentifier: string): boolean {
  return record.history.some((h) => h.systemIdentifier === systemIdentifier);
}
