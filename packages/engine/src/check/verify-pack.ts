/**
 * Reading one pack whole and proving it: its bytes against its SHA-256 name,
 * every chunk its trailer lists decrypted and checked against its id, and
 * what an index object or WAL record says of it found in that trailer.
 */
import { asBuffer, sha256Hex } from '../bytes.js';
import { CorruptObjectError } from '../errors.js';
import { packKey } from '../format/keys-layout.js';
import { decodeTrailer, trailerLengthOf, type PackEntry } from '../format/pack.js';
import type { Repository } from '../repository/repository.js';

/**
 * Verifies pack `sha` and that each of `listed` (what an index object or WAL
 * records place in it) is in its trailer at the same offset and length;
 * returns how many chunks the pack holds. Throws CorruptObjectError naming
 * the pack.
 */
export async function verifyPack(repo: Repository, sha: string, listed: readonly PackEntry[]): Promise<number> {
  const key = packKey(sha);
  const data = asBuffer(await repo.objects.get(key));
  if (sha256Hex(data) !== sha) throw new CorruptObjectError(key, 'SHA-256 of its bytes does not match its name');
  // The trailer must open, or the pack could not rebuild an index entry, and every chunk it lists must decode.
  const tlen = data.length >= 4 ? trailerLengthOf(data) : -1;
  if (tlen < 0 || tlen > data.length - 4) throw new CorruptObjectError(key, `trailer length ${tlen} does not fit in ${data.length} bytes`);
  const dataEnd = data.length - 4 - tlen;
  const opened = repo.objects.codec.openObject(data.subarray(dataEnd, data.length - 4), repo.objects.aad('pack-trailer'));
  if (typeof opened === 'string') throw new CorruptObjectError(key, `trailer: ${opened}`);
  let chunks: PackEntry[];
  try {
    chunks = decodeTrailer(opened);
  } catch (e) {
    throw new CorruptObjectError(key, `trailer: ${(e as Error).message}`);
  }
  const at = new Map<string, PackEntry[]>();
  for (const c of chunks) {
    if (c.offset + c.length > dataEnd) throw new CorruptObjectError(key, `trailer places chunk ${c.id.toString('hex')} past the end of the data`);
    const blob = data.subarray(c.offset, c.offset + c.length);
    if (c.base) {
      // A page delta is found, opened and its base named as the trailer says here; the page it gives needs its
      // base's bytes, which a restore (and a verification drill) proves (docs/FORMAT.md, "Known limits").
      const found = repo.objects.codec.findDelta(c.id, blob);
      if (typeof found === 'string') throw new CorruptObjectError(key, found);
      if (!found.base.equals(c.base)) throw new CorruptObjectError(key, `chunk ${c.id.toString('hex')} is a delta against ${found.base.toString('hex')}, its trailer says against ${c.base.toString('hex')}`);
    } else {
      const plain = repo.objects.codec.decode(c.id, blob);
      if (typeof plain === 'string') throw new CorruptObjectError(key, plain);
    }
    const k = c.id.toString('latin1');
    at.set(k, [...(at.get(k) ?? []), c]);
  }
  for (const e of listed) {
    const same = at.get(e.id.toString('latin1'))?.some((c) => c.offset === e.offset && c.length === e.length);
    if (!same) throw new CorruptObjectError(key, `trailer disagrees with the index: chunk ${e.id.toString('hex')} is placed at offset ${e.offset}, where the trailer lists no such chunk`);
  }
  return chunks.length;
}
