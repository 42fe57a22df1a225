/**
 * Records kept about a backup under a prefix of their own, named after its
 * manifest (`<prefix><label>-<sha>/…`): keep marks, verification records.
 * Listing them grouped by backup, each group in name order (oldest first).
 */
import type { Repository } from './repository.js';

export async function recordKeysByBackup(repo: Repository, prefix: string, parse: (key: string) => { backup: string } | undefined): Promise<Map<string, string[]>> {
  const out = new Map<string, string[]>();
  for (const { key } of await repo.objects.list(prefix)) {
    const named = parse(key);
    if (!named) {
      repo.onWarning(`ignored ${key}: not a name Coffer writes`);
      continue;
    }
    out.set(named.backup, [...(out.get(named.backup) ?? []), key]);
  }
  for (const keys of out.values()) keys.sort();
  return out;
}
