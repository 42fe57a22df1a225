/**
 * Objects hidden, not lost: on a versioned bucket a plain DELETE (by hand, a
 * tool, an attacker without the right to remove versions) only adds a delete
 * marker, and the object reads as absent while its bytes stay in an earlier
 * version. Check reports them; repair makes them current again.
 */
import { isLockable } from '../format/keys-layout.js';
import type { Repository } from './repository.js';
import type { HiddenObject } from '../store/object-store.js';

/** Coffer's objects (those worth protecting) a delete marker hides; none on a store without versions. */
export async function hiddenObjects(repo: Repository): Promise<HiddenObject[]> {
  const versions = repo.objects.versions;
  if (!versions) return [];
  const out: HiddenObject[] = [];
  for await (const h of versions.hidden('')) if (isLockable(h.key)) out.push(h);
  return out.sort((a, b) => (a.key < b.key ? -1 : 1));
}
