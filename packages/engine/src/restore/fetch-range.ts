/** One planned request of a restore: a pack's bytes, whole or a range of them, and a whole pack's check against its name. */
import { asBuffer, sha256Hex } from '../bytes.js';
import { CorruptObjectError, MissingObjectError } from '../errors.js';
import { packKey } from '../format/keys-layout.js';
import type { Repository } from '../repository/repository.js';
import type { FetchRange } from './plan.js';

/** The bytes of `r`; a pack gone from the store is named with the files (`affected`) it leaves without content. */
export async function fetchRange(repo: Repository, r: FetchRange, affected: () => string[]): Promise<Buffer> {
  const key = packKey(r.pack);
  try {
    return asBuffer(await repo.objects.get(key, r.whole ? undefined : { offset: r.offset, length: r.length }));
  } catch (e) {
    if (e instanceof MissingObjectError) throw new MissingObjectError(key, 'not found in the store', affected());
    throw e;
  }
}

/** A whole pack's bytes against its name (a range is checked chunk by chunk as it is opened); `affected` names the files it holds content of. */
export function checkWholePack(r: FetchRange, data: Uint8Array, affected: () => string[]): void {
  if (r.whole && sha256Hex(data) !== r.pack) throw new CorruptObjectError(packKey(r.pack), 'SHA-256 of its bytes does not match its name', affected());
}
