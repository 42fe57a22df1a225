/**
 * A selective mirror: only what some backups need goes into another
 * repository — e.g. the cold tier into a bucket written in a colder (but
 * instantly readable) storage class — and that repository restores them on
 * its own. Their manifests and summaries, keep marks, every pack holding one
 * of their chunks, for PostgreSQL backups the WAL from start to stop and the
 * timeline history files, all key records and stanza records, and the
 * config. Index objects cannot be copied (they list packs left behind), so
 * the copy writes its own for the packs it brought, sealed with the
 * repository's keys: the same repository, smaller.
 *
 * In `postgres/` because it must know which WAL a PostgreSQL backup needs;
 * it copies files backups as well.
 */
import pLimit from 'p-limit';
import { ID_BYTES } from '../format/chunk-codec.js';
import { CATALOGUE_PREFIX, catalogueKey } from '../format/catalogue-record.js';
import { decodeIndex, encodeIndex, type IndexedPack } from '../format/index-file.js';
import { INDEX_PREFIX, indexKey, isPageIndexKey, KEYS_PREFIX, PACK_PREFIX, packKey } from '../format/keys-layout.js';
import { chunkIdsOf } from '../format/manifest.js';
import { STANZA_PREFIX } from '../format/stanza-record.js';
import { walKey, WAL_PREFIX } from '../format/wal-record.js';
import { sha256Hex } from '../bytes.js';
import { scanIndexObjects } from '../gc/mark.js';
import { checkMirrorPair, copyObject, emptyMirrorReport, finishMirror, withMirrorLeases, type MirrorReport } from '../mirror/mirror.js';
import { IdTable } from '../repository/id-table.js';
import { keepKeys } from '../repository/keep-marks.js';
import type { Repository } from '../repository/repository.js';
import { decodeWalRecord } from '../repository/sealed-records.js';
import { collectList, type ObjectStore } from '../store/object-store.js';
import { backupSegments } from './backup-postgres.js';
import { parseLsn } from './layout.js';

export interface MirrorBackupsOptions {
  concurrency?: number;
  leaseTtlMs?: number;
  onProgress?: (message: string) => void;
}

export interface MirrorBackupsReport extends MirrorReport {
  /** Manifest keys of the backups copied. */
  backups: string[];
  packs: number;
  walFiles: number;
  /** Index objects written for the packs brought (none when the destination indexed them all already). */
  indexObjects: string[];
}

export async function mirrorBackups(repo: Repository, to: ObjectStore, selectors: readonly string[], options: MirrorBackupsOptions = {}): Promise<MirrorBackupsReport> {
  const from = { get: (key: string) => repo.objects.get(key), properties: { location: repo.location, connections: repo.objects.connections } };
  const sourceConfig = await checkMirrorPair(from, to);
  const keys = [...new Set(await Promise.all(selectors.map((s) => repo.findBackupKey(s))))].sort();
  return withMirrorLeases(repo, to, options.leaseTtlMs, async () => {
    const progress = options.onProgress ?? (() => undefined);
    const report: MirrorBackupsReport = { ...emptyMirrorReport(), backups: keys, packs: 0, walFiles: 0, indexObjects: [] };
    const limit = pLimit(options.concurrency ?? Math.max(1, Math.min(16, repo.objects.connections, to.properties.connections)));

    // The chunks the backups name, and the WAL PostgreSQL backups need.
    const manifests = await Promise.all(keys.map((k) => repo.readManifest(k)));
    const count = manifests.reduce((n, m) => n + m.entries.reduce((c, e) => c + (e.type === 'file' && e.linkTo === undefined ? chunkIdsOf(e).length / ID_BYTES : 0), 0), 0);
    const indexKeys = await repo.listIndexKeys();
    // The chunks the backups name, and the bases their page deltas need (each pass finds one more step of the chains).
    const bases: Buffer[] = [];
    let ids: IdTable;
    for (;;) {
      ids = new IdTable(Math.max(1, count + bases.length));
      for (const m of manifests) for (const e of m.entries) if (e.type === 'file' && e.linkTo === undefined) {
        const list = chunkIdsOf(e);
        for (let at = 0; at < list.length; at += ID_BYTES) ids.addBytes(list, at);
      }
      for (const b of bases) ids.addBytes(b, 0);
      const more = new Map<string, Buffer>();
      const table = ids;
      await scanIndexObjects(repo, indexKeys, () => undefined, () => undefined, (bytes, entryAt, baseAt) => {
        if (table.has(bytes, entryAt) && !table.has(bytes, baseAt)) more.set(bytes.toString('latin1', baseAt, baseAt + ID_BYTES), Buffer.from(bytes.subarray(baseAt, baseAt + ID_BYTES)));
      });
      if (more.size === 0) break;
      bases.push(...more.values());
    }
    const walKeys = new Set<string>();
    for (const m of manifests) {
      const pg = m.postgres;
      if (!pg) continue;
      const scope = { stanza: m.stanza ?? 'main', systemIdentifier: pg.systemIdentifier };
      for (const name of backupSegments(pg.timeline, parseLsn(pg.startLsn), parseLsn(pg.stopLsn), pg.walSegmentSize)) walKeys.add(walKey(scope, name));
      for (const o of await repo.objects.list(`${WAL_PREFIX}${scope.stanza}/${scope.systemIdentifier}/`)) if (o.key.endsWith('.history')) walKeys.add(o.key);
    }

    // Which packs hold those chunks (and which of them hold relation pages, indexed apart).
    const needed = new Set<string>();
    const pagePacks = new Set<string>();
    let current = '';
    await scanIndexObjects(
      repo,
      indexKeys,
      (key, sha) => {
        current = sha;
        if (isPageIndexKey(key)) pagePacks.add(sha);
      },
      (bytes, at) => {
        if (ids.has(bytes, at)) needed.add(current);
      },
    );
    // Their index entries, for the destination's own index objects.
    const entries = new Map<string, IndexedPack>();
    await scanIndexObjects(
      repo,
      indexKeys,
      (_key, sha) => (current = sha),
      (bytes, at) => {
        if (!needed.has(current)) return;
        const p = entries.get(current) ?? { sha: current, entries: [] };
        if (!p.entries.some((e) => e.offset === bytes.readUInt32BE(at + ID_BYTES) && e.id.equals(bytes.subarray(at, at + ID_BYTES)))) {
          p.entries.push({ id: Buffer.from(bytes.subarray(at, at + ID_BYTES)), offset: bytes.readUInt32BE(at + ID_BYTES), length: bytes.readUInt32BE(at + ID_BYTES + 4), rawLength: bytes.readUInt32BE(at + ID_BYTES + 8) });
        }
        entries.set(current, p);
      },
      (bytes, entryAt, baseAt) => {
        const offset = bytes.readUInt32BE(entryAt + ID_BYTES);
        const e = entries.get(current)?.entries.find((x) => x.offset === offset && x.id.equals(bytes.subarray(entryAt, entryAt + ID_BYTES)));
        if (e) e.base = Buffer.from(bytes.subarray(baseAt, baseAt + ID_BYTES));
      },
    );
    const walPacks = new Set<string>();
    const presentWal: string[] = [];
    for (const key of walKeys) {
      const bytes = await repo.objects.getIfPresent(key);
      if (!bytes) continue;
      for (const loc of Object.values(decodeWalRecord(repo, key, bytes).locations ?? {})) walPacks.add(loc[0]);
      presentWal.push(key);
    }
    progress(`${keys.length} backup(s): ${needed.size} pack(s), ${presentWal.length} WAL file(s) with ${walPacks.size} pack(s)`);

    // Data first, then the index that names it, then what names chunks, then the config: an interrupted copy names nothing it lacks.
    const packs = [...new Set([...needed, ...walPacks])];
    await Promise.all(packs.map((sha) => limit(() => copyObject(from, to, packKey(sha), PACK_PREFIX, report))));
    report.packs = packs.length;

    const indexed = new Set<string>();
    const destIndex = (await collectList(to, INDEX_PREFIX)).map((o) => o.key);
    await scanIndexObjectsAt(repo, to, destIndex, (sha) => indexed.add(sha));
    for (const pages of [false, true]) {
      const fresh = [...entries.values()].filter((p) => !indexed.has(p.sha) && pagePacks.has(p.sha) === pages);
      for (let i = 0; i < fresh.length; i += 64) {
        const sealed = repo.objects.seal('index', encodeIndex(fresh.slice(i, i + 64)));
        const key = indexKey(sha256Hex(sealed), pages);
        await to.put(key, sealed);
        report.indexObjects.push(key);
        report.copied++;
        report.bytesCopied += sealed.length;
        report.copiedByPrefix[INDEX_PREFIX] = (report.copiedByPrefix[INDEX_PREFIX] ?? 0) + 1;
      }
    }

    const keyObjects = [...(await repo.objects.list(KEYS_PREFIX)), ...(await repo.objects.list(STANZA_PREFIX))].map((o) => o.key);
    await Promise.all(keyObjects.map((k) => limit(() => copyObject(from, to, k, k.slice(0, k.indexOf('/') + 1), report))));
    const marks = await keepKeys(repo);
    for (const k of keys) {
      await copyObject(from, to, k, 'backups/', report);
      await copyObject(from, to, catalogueKey(k), CATALOGUE_PREFIX, report);
      for (const m of marks.get(k) ?? []) await copyObject(from, to, m, 'keep/', report);
    }
    await Promise.all(presentWal.map((k) => limit(() => copyObject(from, to, k, WAL_PREFIX, report))));
    report.walFiles = presentWal.length;

    await finishMirror(to, sourceConfig, report);
    return report;
  });
}

/** Packs the destination's index objects already list (read with the repository's keys: it is the same repository). */
async function scanIndexObjectsAt(repo: Repository, store: ObjectStore, keys: readonly string[], onPack: (sha: string) => void): Promise<void> {
  for (const key of keys) {
    const plain = repo.objects.open('index', key, await store.get(key));
    for (const p of decodeIndex(plain)) onPack(p.sha);
  }
}
