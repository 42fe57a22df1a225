/** Test helpers: scratch directories, random trees, and tree snapshots to compare. */
import { createHash, randomBytes } from 'node:crypto';
import { lstat, mkdir, mkdtemp, readdir, readFile, readlink, rm, symlink, utimes, chmod, writeFile, lutimes } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';

export async function scratch(prefix = 'coffer-test-'): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

export interface SnapshotEntry {
  type: 'file' | 'dir' | 'symlink';
  mode: number;
  /** Modification time in microseconds (what utimes can set exactly). */
  mtimeUs: bigint;
  size?: number;
  sha256?: string;
  target?: string;
}

/** Everything a backup promises to restore, keyed by relative path ('.' is the root). */
export async function snapshot(root: string): Promise<Map<string, SnapshotEntry>> {
  const out = new Map<string, SnapshotEntry>();
  const visit = async (rel: string) => {
    const abs = rel === '.' ? root : join(root, rel);
    const st = await lstat(abs, { bigint: true });
    const base = { mode: Number(st.mode & 0o7777n), mtimeUs: st.mtimeNs / 1000n };
    if (st.isDirectory()) {
      out.set(rel, { type: 'dir', ...base });
      for (const name of (await readdir(abs)).sort()) await visit(rel === '.' ? name : `${rel}/${name}`);
    } else if (st.isSymbolicLink()) {
      out.set(rel, { type: 'symlink', ...base, target: await readlink(abs) });
    } else {
      const data = await readFile(abs);
      out.set(rel, { type: 'file', ...base, size: data.length, sha256: createHash('sha256').update(data).digest('hex') });
    }
  };
  await visit('.');
  return out;
}

export interface FileSpec {
  kind: 'file';
  name: string;
  content: Uint8Array;
  mode: number;
  mtimeMs: number;
}
export interface LinkSpec {
  kind: 'symlink';
  name: string;
  target: string;
  mtimeMs: number;
}
export interface DirSpec {
  kind: 'dir';
  name: string;
  mode: number;
  mtimeMs: number;
  children: NodeSpec[];
}
export type NodeSpec = FileSpec | LinkSpec | DirSpec;

const nameArb = fc.stringMatching(/^[a-zA-Z0-9_][a-zA-Z0-9_. -]{0,11}$/).filter((n) => n !== '.' && n !== '..');
const mtimeArb = fc.integer({ min: 946684800000, max: 4102444800000 }); // 2000–2100, whole milliseconds

/**
 * Random file contents: empty, small, repeated blocks (so chunks repeat across
 * and within files), and larger random runs that span several chunks.
 */
export const contentArb: fc.Arbitrary<Uint8Array> = fc.oneof(
  fc.constant(new Uint8Array(0)),
  fc.uint8Array({ minLength: 1, maxLength: 300 }),
  fc.tuple(fc.integer({ min: 0, max: 3 }), fc.integer({ min: 1, max: 12 })).map(([seed, reps]) => {
    const block = Buffer.alloc(3000, 0);
    for (let i = 0; i < block.length; i++) block[i] = (i * 7 + seed * 131 + ((i >> 5) * 13)) & 0xff;
    return Buffer.concat(Array.from({ length: reps }, () => block));
  }),
  fc.integer({ min: 1, max: 60_000 }).map((n) => new Uint8Array(randomBytes(n))),
);

const fileArb: fc.Arbitrary<FileSpec> = fc.record({
  kind: fc.constant('file' as const),
  name: nameArb,
  content: contentArb,
  mode: fc.constantFrom(0o644, 0o600, 0o755, 0o400, 0o640, 0o4755),
  mtimeMs: mtimeArb,
});
const linkArb: fc.Arbitrary<LinkSpec> = fc.record({
  kind: fc.constant('symlink' as const),
  name: nameArb,
  target: fc.oneof(nameArb, fc.constant('../x/y'), fc.constant('/etc/hostname'), fc.constant('dangling target')),
  mtimeMs: mtimeArb,
});

export const treeArb: fc.Arbitrary<NodeSpec[]> = fc.letrec<{ nodes: NodeSpec[]; dir: DirSpec }>((tie) => ({
  nodes: fc
    .array(fc.oneof({ depthSize: 'small', withCrossShrink: true }, fileArb, fileArb, linkArb, tie('dir')), { maxLength: 6 })
    .map((nodes) => dedupeNames(nodes)),
  dir: fc.record({
    kind: fc.constant('dir' as const),
    name: nameArb,
    mode: fc.constantFrom(0o755, 0o700, 0o750, 0o1777),
    mtimeMs: mtimeArb,
    children: tie('nodes') as fc.Arbitrary<NodeSpec[]>,
  }),
})).nodes;

function dedupeNames(nodes: NodeSpec[]): NodeSpec[] {
  const seen = new Set<string>();
  return nodes.filter((n) => {
    const k = n.name.toLowerCase();
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
}

/** Writes a tree; file and directory modes and times are set last, deepest first. */
export async function writeTree(root: string, nodes: NodeSpec[], rootMtimeMs = 1_700_000_000_123): Promise<void> {
  await mkdir(root, { recursive: true });
  const later: Array<() => Promise<void>> = [];
  const write = async (dir: string, list: NodeSpec[]) => {
    for (const n of list) {
      const p = join(dir, n.name);
      if (n.kind === 'file') {
        await writeFile(p, n.content);
        await chmod(p, n.mode);
        await utimes(p, n.mtimeMs / 1000, n.mtimeMs / 1000);
      } else if (n.kind === 'symlink') {
        await symlink(n.target, p);
        await lutimes(p, n.mtimeMs / 1000, n.mtimeMs / 1000);
      } else {
        await mkdir(p);
        await write(p, n.children);
        later.push(async () => {
          await chmod(p, n.mode);
          await utimes(p, n.mtimeMs / 1000, n.mtimeMs / 1000);
        });
      }
    }
  };
  await write(root, nodes);
  for (const f of later) await f();
  await utimes(root, rootMtimeMs / 1000, rootMtimeMs / 1000);
}

/** A deterministic pseudo-random buffer (xorshift), fast to make in bulk. */
export function pseudoRandom(size: number, seed: number): Buffer {
  const buf = Buffer.allocUnsafe(size);
  let x = (seed | 0) || 0x9e3779b9;
  let i = 0;
  for (; i + 4 <= size; i += 4) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    buf.writeInt32LE(x | 0, i);
  }
  for (; i < size; i++) buf[i] = i & 0xff;
  return buf;
}
