/**
 * Page checksum verification as a read check of the chunk pipeline
 * (`content/read-check.ts`): whole pages are checked as a relation file is
 * read, and a page that fails is read again once on its own — PostgreSQL may
 * have been writing it (a torn read), and the second read then shows a good
 * page or one past the backup's start LSN, which WAL replay rewrites anyway.
 * A page that fails twice is damaged: the backup goes on (the cluster is
 * damaged, which is when a backup matters most), stores the page as read,
 * and lists it in the file's manifest entry; the backup ends with warnings.
 */
import type { CheckedFile, ReadCheckOptions, ReadCheck, ReadCheckFactory, ReadCheckSpec } from '../content/read-check.js';
import { badPages, BLCKSZ } from './page-checksum.js';

/** Page checks for one relation file read with data checksums on. */
export interface PageVerify {
  /** Path named in errors (relative to the data directory). */
  label: string;
  /** Relation block number of the file's first page. */
  firstBlock: number;
  /** Pages with an LSN at or past the backup's start are not judged. */
  startLsn: bigint;
}

/** The read check that verifies `verify`'s pages, for the chunk pipeline. */
export function pageVerifyCheck(verify: PageVerify): ReadCheckSpec {
  // Named relative to this module rather than as `import.meta.url`: the CLI's bundle inlines this code
  // into a shared chunk and keeps `page-verify.js` as an entry of its own beside it.
  return { module: new URL('./page-verify.js', import.meta.url).href, options: { label: verify.label, firstBlock: verify.firstBlock, startLsn: verify.startLsn.toString() } };
}

export const createReadCheck: ReadCheckFactory = (options: ReadCheckOptions, file: CheckedFile, start: number): ReadCheck => {
  const o = options as { label: string; firstBlock: number; startLsn: string };
  return new PageChecker({ label: o.label, firstBlock: o.firstBlock, startLsn: BigInt(o.startLsn) }, file, start / BLCKSZ);
};

class PageChecker implements ReadCheck {
  private carry = Buffer.alloc(0);
  private block: number;
  private readonly bad: number[] = [];
  constructor(
    private readonly verify: PageVerify,
    private readonly file: CheckedFile,
    skipBlocks: number,
  ) {
    this.block = verify.firstBlock + skipBlocks;
  }

  async check(data: Buffer): Promise<void> {
    const buf = this.carry.length ? Buffer.concat([this.carry, data]) : data;
    const whole = buf.length - (buf.length % BLCKSZ);
    for (const block of badPages(buf.subarray(0, whole), this.block, this.verify.startLsn)) {
      const again = await this.file.read((block - this.verify.firstBlock) * BLCKSZ, BLCKSZ);
      if (again.length === BLCKSZ && badPages(again, block, this.verify.startLsn).length > 0) this.bad.push(block);
    }
    this.block += whole / BLCKSZ;
    this.carry = Buffer.from(buf.subarray(whole));
  }

  damaged(): number[] {
    return this.bad;
  }
}
