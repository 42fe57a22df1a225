/** Nothing of the backed-up data is visible in the repository's bytes: contents, names, link targets. */
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { coffer } from './support/cli.js';
import { pseudoRandom, scratch, writeTree } from './support/tree.js';

const MARKER = 'COFFER-MARKER-7f3a9c51';
const PASSPHRASE = 'marker test passphrase 42';
let work: { dir: string; cleanup: () => Promise<void> };

beforeAll(async () => {
  work = await scratch('coffer-marker-');
});
afterAll(async () => work.cleanup());

async function allFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...(await allFiles(p)));
    else out.push(p);
  }
  return out;
}

describe('confidentiality', () => {
  it('a marker in file contents, names and link targets appears nowhere in the repository, in any common encoding', async () => {
    const src = join(work.dir, 'src');
    await writeTree(src, [
      { kind: 'file', name: 'plain.txt', content: Buffer.from(`line with ${MARKER}\n`.repeat(20_000)), mode: 0o644, mtimeMs: 1_600_000_000_000 },
      { kind: 'file', name: 'embedded.bin', content: Buffer.concat([pseudoRandom(100_000, 1), Buffer.from(MARKER), pseudoRandom(100_000, 2)]), mode: 0o644, mtimeMs: 1_600_000_000_000 },
      { kind: 'file', name: `name-${MARKER}.txt`, content: Buffer.from('x'), mode: 0o644, mtimeMs: 1_600_000_000_000 },
      { kind: 'dir', name: `dir-${MARKER}`, mode: 0o755, mtimeMs: 1_600_000_000_000, children: [{ kind: 'symlink', name: 'ln', target: `/target/${MARKER}`, mtimeMs: 1_600_000_000_000 }] },
    ]);
    const repo = join(work.dir, 'repo');
    const env = { COFFER_PASSPHRASE: PASSPHRASE };
    expect((await coffer(['--repo', repo, 'init'], env)).status).toBe(0);
    expect((await coffer(['--repo', repo, 'backup', '--path', src], env)).status).toBe(0);
    const files = await allFiles(repo);
    expect(files.length).toBeGreaterThanOrEqual(4); // config, a pack, an index, a manifest
    const needles = [MARKER, PASSPHRASE].flatMap((s) => [
      Buffer.from(s),
      Buffer.from(s.toLowerCase()),
      Buffer.from(Buffer.from(s).toString('hex')),
      Buffer.from(Buffer.from(s).toString('base64').slice(0, 20)),
      Buffer.from(s, 'utf16le'),
    ]);
    let scanned = 0;
    for (const f of files) {
      const bytes = await readFile(f);
      scanned += bytes.length;
      for (const n of needles) expect(bytes.indexOf(n), `${n.toString()} found in ${f}`).toBe(-1);
      expect(f).not.toContain(MARKER);
    }
    expect(scanned).toBeGreaterThan(100_000);
  });
});
