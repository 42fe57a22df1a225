/**
 * Repacking: the blobs of mostly dead packs that still hold a live chunk are
 * copied, as stored (still sealed: no key is needed to move them, and the
 * chunk id is checked again when they are read), into new packs, which are
 * durable and indexed before the old packs are condemned. A group blob moves
 * whole if any member is live.
 */
import { sha256Hex } from '../bytes.js';
import { CorruptObjectError } from '../errors.js';
import type { IndexedPack } from '../format/index-file.js';
import { packKey } from '../format/keys-layout.js';
import { decodeTrailer, trailerLengthOf, type PackEntry } from '../format/pack.js';
import { sealedTrailer } from '../content/pack-writer.js';
import type { Repository } from '../repository/repository.js';
import type { LiveTest } from './confirm.js';

export interface RepackResult {
  /** New packs and the index objects that list them. */
  packs: IndexedPack[];
  indexObjects: string[];
  bytesRead: number;
  bytesWritten: number;
}

/** The chunks a stored pack lists, from its own trailer. */
export function packEntries(repo: Repository, key: string, pack: Buffer): PackEntry[] {
  try {
    const length = trailerLengthOf(pack);
    const sealed = pack.subarray(pack.length - 4 - length, pack.length - 4);
    return decodeTrailer(repo.objects.open('pack-trailer', key, sealed));
  } catch (e) {
    if (e instanceof CorruptObjectError) throw e;
    throw new CorruptObjectError(key, `pack trailer: ${(e as Error).message}`);
  }
}

/** Collects copied blobs into packs of the repository's pack size. */
class PackCopier {
  private blobs: Buffer[] = [];
  private entries: PackEntry[] = [];
  private size = 0;
  readonly packs: IndexedPack[] = [];
  bytesWritten = 0;

  constructor(
    private readonly repo: Repository,
    private readonly packSize: number,
  ) {}

  async add(blob: Buffer, members: readonly PackEntry[]): Promise<void> {
    if (this.size > 0 && this.size + blob.length + (this.entries.length + members.length) * 44 > this.packSize) await this.flush();
    for (const m of members) this.entries.push({ id: m.id, offset: this.size, length: blob.length, rawLength: m.rawLength, ...(m.base ? { base: m.base } : {}) });
    this.blobs.push(blob);
    this.size += blob.length;
  }

  async flush(): Promise<void> {
    if (this.entries.length === 0) return;
    const pack = Buffer.concat([...this.blobs, sealedTrailer(this.repo, this.entries)]);
    const sha = sha256Hex(pack);
    await this.repo.objects.put(packKey(sha), pack);
    this.packs.push({ sha, entries: this.entries });
    this.bytesWritten += pack.length;
    this.blobs = [];
    this.entries = [];
    this.size = 0;
  }
}

/**
 * Copies the live blobs of `packs` (SHA-256s; `pages` says whether they hold
 * relation pages, which keep index objects of their own) into new packs and
 * indexes them. Returns once the new packs and their index are durable.
 */
export async function repack(repo: Repository, packs: readonly string[], pages: boolean, live: LiveTest, prove: (what: string) => void, onProgress?: (message: string) => void): Promise<RepackResult> {
  const copier = new PackCopier(repo, repo.config.packSize);
  let bytesRead = 0;
  for (const sha of packs) {
    const key = packKey(sha);
    const pack = await repo.objects.getVerified(key);
    bytesRead += pack.length;
    const byOffset = new Map<number, PackEntry[]>();
    for (const e of packEntries(repo, key, pack)) byOffset.set(e.offset, [...(byOffset.get(e.offset) ?? []), e]);
    for (const [offset, members] of byOffset) {
      if (!members.some((m) => live(sha, m.id, 0))) continue;
      const length = members[0]!.length;
      if (offset + length > pack.length) throw new CorruptObjectError(key, `blob at ${offset} runs past the pack's end`);
      await copier.add(Buffer.from(pack.subarray(offset, offset + length)), members);
    }
    onProgress?.(`repacked ${key}`);
  }
  await copier.flush();
  const indexObjects: string[] = [];
  // The same batching as backups: an index object lists at most 64 packs.
  for (let i = 0; i < copier.packs.length; i += 64) {
    prove('indexing repacked chunks');
    indexObjects.push((await repo.writeIndexObject(copier.packs.slice(i, i + 64), pages)).key);
  }
  return { packs: copier.packs, indexObjects, bytesRead, bytesWritten: copier.bytesWritten };
}
