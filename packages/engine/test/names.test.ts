/**
 * File names are bytes: names that are not valid UTF-8 survive a backup and
 * a restore byte for byte (directories, files and symlink targets), and the
 * string form Coffer keeps them in maps back to exactly those bytes.
 */
import { lstat, mkdir, readdir, readFile, readlink, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backupFiles, decodeName, displayPath, encodeName, FileStore, LocalKeyProvider, Repository, restoreBackup } from '@coffer/engine';
import { scratch } from '../../../test/support/tree.js';

/** A name: 1–12 bytes, no '/' or NUL, not '.' or '..'. */
const nameArb = fc
  .uint8Array({ minLength: 1, maxLength: 12 })
  .map((b) => Buffer.from(b.map((x) => (x === 0 || x === 0x2f ? 0x41 : x))))
  .filter((b) => !b.equals(Buffer.from('.')) && !b.equals(Buffer.from('..')));

const at = (dir: Buffer, name: Buffer) => Buffer.concat([dir, Buffer.from('/'), name]);

/** Every entry under `dir` as raw bytes: relative path → kind and content. */
async function rawTree(dir: Buffer, rel = Buffer.alloc(0), out = new Map<string, string>()): Promise<Map<string, string>> {
  for (const name of await readdir(dir, { encoding: 'buffer' })) {
    const p = at(dir, name);
    const r = rel.length ? at(rel, name) : name;
    const st = await lstat(p);
    const key = r.toString('hex');
    if (st.isDirectory()) {
      out.set(key, 'dir');
      await rawTree(p, r, out);
    } else if (st.isSymbolicLink()) out.set(key, `link:${(await readlink(p, { encoding: 'buffer' })).toString('hex')}`);
    else out.set(key, `file:${(await readFile(p)).toString('hex')}`);
  }
  return out;
}

let work: { dir: string; cleanup: () => Promise<void> };
let repo: Repository;
beforeAll(async () => {
  work = await scratch('coffer-names-');
  const keyFile = join(work.dir, 'key');
  await writeFile(keyFile, LocalKeyProvider.newKeyFileContent());
  repo = await Repository.init(new FileStore(join(work.dir, 'repo')), await LocalKeyProvider.fromKeyFile(keyFile));
});
afterAll(async () => work.cleanup());

describe('names as bytes', () => {
  it('decodeName and encodeName round-trip any bytes, and leave valid UTF-8 as it reads', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (b) => {
        expect(encodeName(decodeName(b)).equals(Buffer.from(b))).toBe(true);
      }),
      { numRuns: 2000 },
    );
    fc.assert(
      fc.property(fc.string({ unit: 'grapheme', maxLength: 30 }), (s) => {
        expect(decodeName(Buffer.from(s, 'utf8'))).toBe(s);
      }),
    );
    expect(displayPath(decodeName(Buffer.from('payroll-\xe9t\xe9.xls', 'latin1')))).toBe('payroll-\\xe9t\\xe9.xls');
  });

  it('random trees whose names are random byte strings restore byte for byte', async () => {
    let round = 0;
    await fc.assert(
      fc.asyncProperty(fc.uniqueArray(nameArb, { minLength: 1, maxLength: 6, selector: (b) => b.toString('hex') }), fc.uniqueArray(nameArb, { minLength: 1, maxLength: 4, selector: (b) => b.toString('hex') }), async (top, inner) => {
        const src = Buffer.from(join(work.dir, `src-${round}`));
        const to = join(work.dir, `to-${round++}`);
        await mkdir(src);
        for (const [i, name] of top.entries()) {
          if (i % 3 === 0) {
            await mkdir(at(src, name));
            for (const [k, n] of inner.entries()) await writeFile(at(at(src, name), n), Buffer.concat([name, n, Buffer.from([k])]));
          } else if (i % 3 === 1) await writeFile(at(src, name), Buffer.concat([name, Buffer.from('content')]));
          else await symlink(Buffer.concat([Buffer.from('../'), name]), at(src, name));
        }
        const { key, manifest } = await backupFiles(repo, src.toString());
        expect(manifest.stats.skipped).toEqual([]);
        await restoreBackup(repo, key, to);
        expect(await rawTree(Buffer.from(to))).toEqual(await rawTree(src));
      }),
      { numRuns: 25 },
    );
  });
});
