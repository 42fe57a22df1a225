/**
 * A repository and its mirrors opened as one store, for WAL written to every
 * region at once (`ReplicatedStore`). A mirror is the same repository in
 * another store (`coffer mirror` copies its config and key ring): the same
 * sealed objects are valid in each, so WAL is sealed once and written to all.
 */
import { bytesEqual } from '../bytes.js';
import { InvalidArgumentError, MissingObjectError } from '../errors.js';
import { CONFIG_KEY, KEYS_PREFIX } from '../format/keys-layout.js';
import { collectList, type ObjectStore } from '../store/object-store.js';
import { ReplicatedStore } from '../store/replicated-store.js';

export interface ReplicaOptions {
  /**
   * Whether WAL will be written (wal-push, wal-receive): then every store must
   * hold the repository and answer now, and the key ring is copied to those
   * that lack part of it (a key rotated since the last mirror run). A reader
   * (wal-fetch) goes on with the stores that answer, so that it reads from a
   * mirror while the other region is lost.
   */
  writer: boolean;
  /** What names the mirrors in messages (an option, a policy key). */
  what?: string;
}

/** `stores[0]` is the repository, read first; the others its mirrors. */
export async function openReplicas(stores: readonly ObjectStore[], options: ReplicaOptions): Promise<ReplicatedStore> {
  const what = options.what ?? 'mirror';
  const replicated = new ReplicatedStore(stores, { lists: options.writer ? 'every' : 'answered' });
  const configs = await replicated.getEach(CONFIG_KEY);
  const held = configs.flatMap((c, i) => (c.status === 'fulfilled' ? [{ store: stores[i]!, config: c.value }] : []));
  const reference = held[0];
  for (const [i, c] of configs.entries()) {
    const at = stores[i]!.properties.location;
    if (c.status === 'fulfilled') {
      if (!bytesEqual(c.value, reference!.config)) throw new InvalidArgumentError(what, `${at} holds another repository than ${reference!.store.properties.location}: a ${what} must be a copy of the repository (coffer mirror --to ${at})`);
      continue;
    }
    if (!options.writer) continue;
    if (c.reason instanceof MissingObjectError) {
      const source = reference?.store.properties.location ?? 'the repository';
      throw new InvalidArgumentError(what, `${at} holds no repository: make it a copy of ${source} first (coffer mirror --to ${at}), then WAL is written to both`);
    }
    throw c.reason;
  }
  if (options.writer && stores.length > 1) await replicated.replicate((await collectList(replicated, KEYS_PREFIX)).map((o) => o.key));
  return replicated;
}
