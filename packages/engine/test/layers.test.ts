/**
 * The engine's layering (ARCHITECTURE.md), enforced: every relative import
 * points to the same layer or one above it in the table (leaves first), and
 * nothing outside `postgres/` imports from `postgres/`.
 */
import { readdir, readFile } from 'node:fs/promises';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const SRC = fileURLToPath(new URL('../src/', import.meta.url));

/** Rank of each top-level folder or root file: an import may point only to an equal or lower rank. */
const LAYERS: [number, string[]][] = [
  [0, ['errors.ts', 'bytes.ts', 'commonjs.ts', 'names.ts', 'durable.ts', 'pid-file.ts', 'xattrs.ts', 'host-port.ts', 'buffer-pool.ts', 'crypto', 'chunking', 'store', 'keys', 'testing']],
  [1, ['format']],
  [2, ['repository']],
  [3, ['content']],
  [4, ['backup', 'restore', 'check', 'mirror', 'gc', 'retention']],
  [5, ['postgres']],
  [6, ['index.ts']],
];
const rank = new Map(LAYERS.flatMap(([r, names]) => names.map((n) => [n, r] as const)));

function areaOf(file: string): string {
  const rel = relative(SRC, file).replace(/\.js$/, '.ts');
  return rel.includes('/') ? rel.slice(0, rel.indexOf('/')) : rel;
}

async function sources(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...(await sources(p)));
    else if (e.name.endsWith('.ts')) out.push(p);
  }
  return out;
}

describe('engine layers', () => {
  it('imports point to the same layer or one below it in the table, and only postgres/ imports postgres/', async () => {
    const wrong: string[] = [];
    const files = await sources(SRC);
    expect(files.length).toBeGreaterThan(50);
    for (const file of files) {
      const from = areaOf(file);
      const fromRank = rank.get(from);
      if (fromRank === undefined) {
        wrong.push(`${relative(SRC, file)}: ${from} is in no layer of the table`);
        continue;
      }
      const text = await readFile(file, 'utf8');
      for (const m of text.matchAll(/(?:from|import)\s*\(?\s*'(\.{1,2}\/[^']+)'/g)) {
        const to = areaOf(resolve(dirname(file), m[1]!));
        if (to === from) continue;
        const toRank = rank.get(to);
        if (toRank === undefined || toRank > fromRank) wrong.push(`${relative(SRC, file)} imports ${m[1]} (${from} → ${to})`);
        if (to === 'postgres' && from !== 'index.ts') wrong.push(`${relative(SRC, file)} imports from postgres/`);
      }
    }
    expect(wrong).toEqual([]);
  });
});
