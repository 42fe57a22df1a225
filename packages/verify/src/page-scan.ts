/**
 * Page checksums of a stopped data directory, read by Coffer itself: the
 * server packages of PostgreSQL 17 and 18 this project runs on ship no
 * `pg_checksums`, and the algorithm is the one backups already check. Every
 * relation file (main, free space map, visibility map, init forks) in
 * `base/`, `global/` and each tablespace is read whole; a page whose stored
 * checksum is wrong is named by file and block. All-zero pages are new pages,
 * as PostgreSQL treats them.
 */
import { open, readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { badPages, BLCKSZ, relationFirstBlock, RELSEG_BLOCKS } from '@coffer/engine';

export interface PageScanResult {
  files: number;
  pages: number;
  failures: string[];
}

/** Every LSN is older than this: no page is skipped as "changed since the backup started". */
const NO_LSN_LIMIT = 2n ** 64n - 1n;

export async function scanPageChecksums(data: string): Promise<PageScanResult> {
  const result: PageScanResult = { files: 0, pages: 0, failures: [] };
  const dirs: string[] = ['global'];
  for (const db of await readdir(join(data, 'base'))) dirs.push(`base/${db}`);
  for (const ts of await readdir(join(data, 'pg_tblspc')).catch(() => [] as string[])) {
    // pg_tblspc/<oid> links to the tablespace; inside, a directory per server version, then per database.
    for (const version of await readdir(join(data, 'pg_tblspc', ts)).catch(() => [] as string[])) {
      for (const db of await readdir(join(data, 'pg_tblspc', ts, version)).catch(() => [] as string[])) dirs.push(`pg_tblspc/${ts}/${version}/${db}`);
    }
  }
  const buf = Buffer.allocUnsafe(1024 * BLCKSZ);
  for (const dir of dirs) {
    if (!(await stat(join(data, dir))).isDirectory()) continue;
    for (const name of (await readdir(join(data, dir))).sort()) {
      const rel = `${dir}/${name}`;
      const first = relationFirstBlock(rel, RELSEG_BLOCKS);
      if (first === undefined) continue;
      result.files++;
      const fh = await open(join(data, rel), 'r');
      try {
        let block = first;
        for (;;) {
          const { bytesRead } = await fh.read(buf, 0, buf.length, null);
          const pages = Math.floor(bytesRead / BLCKSZ);
          if (pages === 0) break;
          for (const b of badPages(buf.subarray(0, pages * BLCKSZ), block, NO_LSN_LIMIT)) result.failures.push(`${rel} block ${b}: page checksum does not match`);
          result.pages += pages;
          block += pages;
          if (bytesRead < buf.length) break;
        }
      } finally {
        await fh.close();
      }
    }
  }
  return result;
}
