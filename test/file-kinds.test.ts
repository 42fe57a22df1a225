/**
 * What a files backup keeps, through the real CLI: sparse files come back
 * sparse, hard links come back as hard links, and extended attributes
 * (POSIX ACLs among them) come back with their values.
 */
import { link, mkdir, open, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { getAttributeSync, listAttributesSync, setAttributeSync } from '@napi-rs/xattr';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LocalKeyProvider } from '@coffer/engine';
import { EXIT_FILES_CHANGED } from '@coffer/cli';
import { coffer } from './support/cli.js';
import { pseudoRandom, scratch } from './support/tree.js';

let work: { dir: string; cleanup: () => Promise<void> };
let repo: string;
let src: string;
let to: string;
let env: Record<string, string>;

/** A POSIX access ACL as the kernel stores it: user::rw-, user:1234:rw-, group::r--, mask::rw-, other::r--. */
function accessAcl(): Buffer {
  const entries: [number, number, number][] = [
    [0x01, 6, 0xffffffff],
    [0x02, 6, 1234],
    [0x04, 4, 0xffffffff],
    [0x10, 6, 0xffffffff],
    [0x20, 4, 0xffffffff],
  ];
  const b = Buffer.alloc(4 + entries.length * 8);
  b.writeUInt32LE(2, 0);
  entries.forEach(([tag, perm, id], i) => {
    b.writeUInt16LE(tag, 4 + i * 8);
    b.writeUInt16LE(perm, 6 + i * 8);
    b.writeUInt32LE(id, 8 + i * 8);
  });
  return b;
}

beforeAll(async () => {
  work = await scratch('coffer-kinds-');
  repo = join(work.dir, 'repo');
  src = join(work.dir, 'src');
  to = join(work.dir, 'restored');
  await mkdir(join(src, 'sub'), { recursive: true });
  const keyFile = join(work.dir, 'key');
  await writeFile(keyFile, LocalKeyProvider.newKeyFileContent(), { mode: 0o600 });
  env = { COFFER_KEY_FILE: keyFile };
  // 256 MiB with 8 blocks of data: a sparse file.
  const fh = await open(join(src, 'sparse.img'), 'w');
  await fh.truncate(256 << 20);
  for (let i = 0; i < 8; i++) await fh.write(pseudoRandom(4096, i), 0, 4096, i * (32 << 20) + 12_345);
  await fh.close();
  await writeFile(join(src, 'a'), pseudoRandom(100_000, 9));
  await link(join(src, 'a'), join(src, 'b'));
  await link(join(src, 'a'), join(src, 'sub', 'c'));
  await writeFile(join(src, 'plain'), 'not linked');
  setAttributeSync(join(src, 'plain'), 'user.comment', 'kept with the file');
  setAttributeSync(join(src, 'sub'), 'user.role', Buffer.from([0, 1, 2, 255]));
  setAttributeSync(join(src, 'plain'), 'system.posix_acl_access', accessAcl());
  expect((await coffer(['--repo', repo, 'init'], env)).status).toBe(0);
  const b = await coffer(['--repo', repo, 'backup', '--path', src], env);
  expect(b.status).toBe(0);
  const r = await coffer(['--repo', repo, 'restore', 'latest', '--to', to], env);
  expect(r.stderr).toBe('');
  expect(r.status).toBe(0);
}, 120_000);
afterAll(async () => work.cleanup());

describe('a file that changes while it is read', () => {
  it('is read again while it changes, then reported as changed (exit 26, listed in stats.changed); a stable tree exits 0', async () => {
    const tree = join(work.dir, 'busy');
    await mkdir(tree);
    const busy = join(tree, 'busy.log');
    await writeFile(busy, pseudoRandom(48 << 20, 3));
    await writeFile(join(tree, 'quiet'), 'still');
    // Keep writing into the file for the whole backup.
    let writing = true;
    const writer = (async () => {
      const fh = await open(busy, 'r+');
      for (let i = 0; writing; i++) {
        await fh.write(pseudoRandom(512, i), 0, 512, (i * 7919 * 512) % (40 << 20));
        await new Promise((r) => setTimeout(r, 2));
      }
      await fh.close();
    })();
    const r = await coffer(['--repo', repo, 'backup', '--path', tree, '--json'], env);
    writing = false;
    await writer;
    expect(r.status).toBe(EXIT_FILES_CHANGED);
    expect(r.stderr).toContain('changed while they were read');
    expect((JSON.parse(r.stdout) as { stats: { changed: string[] } }).stats.changed).toEqual(['busy.log']);
    const calm = await coffer(['--repo', repo, 'backup', '--path', tree, '--json'], env);
    expect(calm.status).toBe(0);
    expect((JSON.parse(calm.stdout) as { stats: { changed?: string[] } }).stats.changed).toBeUndefined();
  });
});

describe('file kinds a files backup keeps', () => {
  it('a sparse file restores with its content and without allocating its holes', async () => {
    const [a, b] = await Promise.all([readFile(join(src, 'sparse.img')), readFile(join(to, 'sparse.img'))]);
    expect(b.equals(a)).toBe(true);
    const allocated = (await stat(join(to, 'sparse.img'))).blocks * 512;
    expect(allocated).toBeLessThan(4 << 20);
  });

  it('hard links restore as hard links to one file', async () => {
    const [a, b, c, plain] = await Promise.all(['a', 'b', 'sub/c', 'plain'].map((p) => stat(join(to, p))));
    expect(b!.ino).toBe(a!.ino);
    expect(c!.ino).toBe(a!.ino);
    expect(a!.nlink).toBe(3);
    expect(plain!.ino).not.toBe(a!.ino);
    expect((await readFile(join(to, 'sub', 'c'))).equals(await readFile(join(src, 'a')))).toBe(true);
  });

  it('extended attributes and POSIX ACLs restore with their values', () => {
    expect(getAttributeSync(join(to, 'plain'), 'user.comment')?.toString()).toBe('kept with the file');
    expect([...getAttributeSync(join(to, 'sub'), 'user.role')!]).toEqual([0, 1, 2, 255]);
    expect(getAttributeSync(join(to, 'plain'), 'system.posix_acl_access')!.equals(getAttributeSync(join(src, 'plain'), 'system.posix_acl_access')!)).toBe(true);
    expect(listAttributesSync(join(to, 'a'))).toEqual([]);
  });
});
