/**
 * File names are bytes: names that are not valid UTF-8 survive a backup and
 * a restore byte for byte (directories, files and symlink targets), and the
 * string form Coffer keeps them in maps back to exactly those bytes.
 */
import { chmod, link, lstat, mkdir, open, readdir, readFile, readlink, symlink, writeFile } from 'node:fs/promises';
import { getAttributeSync, listAttributesSync, setAttributeSync } from '@napi-rs/xattr';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backupFiles, decodeName, displayPath, encodeName, FileStore, fsPath, LocalKeyProvider, Repository, restoreBackup } from '@coffer/engine';
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

  it('a hard link whose first name is not UTF-8 keeps the file\'s extended attributes through its UTF-8 name', async () => {
    // Found by the property below: the first name walked is the one the link group is stored under.
    const src = Buffer.from(join(work.dir, 'link-xattr'));
    const to = join(work.dir, 'link-xattr-to');
    await mkdir(src);
    const text = at(src, Buffer.from('A'));
    await writeFile(text, 'linked');
    setAttributeSync(text.toString(), 'user.coffer', Buffer.from('kept'));
    await link(text, at(src, Buffer.from([0x01, 0x80])));
    const { key } = await backupFiles(repo, src.toString());
    await restoreBackup(repo, key, to);
    const restored = join(to, 'A');
    expect(getAttributeSync(restored, 'user.coffer')?.toString()).toBe('kept');
    expect((await lstat(restored)).nlink).toBe(2);
  });

  it('random trees of byte-named files, sparse files, hard links and extended attributes restore byte for byte, metadata included', async () => {
    type Kind = { kind: 'plain' | 'sparse' | 'link'; xattr?: Uint8Array; mode: number };
    const kindArb: fc.Arbitrary<Kind> = fc.record({
      kind: fc.constantFrom('plain' as const, 'sparse' as const, 'link' as const),
      xattr: fc.option(fc.uint8Array({ minLength: 0, maxLength: 64 }), { nil: undefined }),
      mode: fc.constantFrom(0o600, 0o640, 0o755, 0o444),
    });
    let round = 0;
    await fc.assert(
      fc.asyncProperty(fc.uniqueArray(nameArb, { minLength: 2, maxLength: 7, selector: (b) => b.toString('hex') }), fc.array(kindArb, { minLength: 7, maxLength: 7 }), async (names, kinds) => {
        const src = Buffer.from(join(work.dir, `mixed-${round}`));
        const to = join(work.dir, `mixed-to-${round++}`);
        await mkdir(src);
        let first: Buffer | undefined;
        for (const [i, name] of names.entries()) {
          const k = kinds[i]!;
          const p = at(src, name);
          if (k.kind === 'link' && first) await link(first, p);
          else if (k.kind === 'sparse') {
            const fh = await open(p, 'w');
            await fh.truncate(8 << 20);
            await fh.write(Buffer.concat([name, Buffer.from('data')]), 0, name.length + 4, 3 << 20);
            await fh.close();
          } else await writeFile(p, Buffer.concat([name, Buffer.from(` plain ${i}`)]));
          if (k.kind !== 'link' || !first) {
            first ??= p;
            await chmod(p, k.mode);
            // The xattr binding takes UTF-8 paths: names that are not UTF-8 keep no extended attributes (a recorded limit).
            if (k.xattr && typeof fsPath(decodeName(p)) === 'string') setAttributeSync(p.toString(), 'user.coffer', Buffer.from(k.xattr));
          }
        }
        const { key, manifest } = await backupFiles(repo, src.toString());
        expect(manifest.stats.skipped).toEqual([]);
        await restoreBackup(repo, key, to);
        expect(await fullTree(Buffer.from(to))).toEqual(await fullTree(src));
      }),
      { numRuns: 15 },
    );
  });
});

/** Names, contents, modes, mtimes, link groups, allocated-or-hole, and xattrs, as comparable values. */
async function fullTree(dir: Buffer): Promise<Record<string, unknown>> {
  const out: Record<string, unknown> = {};
  const inodes = new Map<number, string>();
  for (const name of (await readdir(dir, { encoding: 'buffer' })).sort(Buffer.compare)) {
    const p = at(dir, name);
    const st = await lstat(p);
    const xattrs: Record<string, string> = {};
    if (typeof fsPath(decodeName(p)) === 'string') for (const n of listAttributesSync(p.toString())) xattrs[n] = getAttributeSync(p.toString(), n)!.toString('hex');
    const group = inodes.get(st.ino) ?? name.toString('hex');
    inodes.set(st.ino, group);
    out[name.toString('hex')] = {
      content: (await readFile(p)).toString('hex').slice(0, 200) + `:${st.size}`,
      mode: st.mode & 0o7777,
      mtimeMs: Math.floor(st.mtimeMs),
      linkGroup: group,
      sparse: st.blocks * 512 < st.size,
      xattrs,
    };
  }
  return out;
}
