/** Relation pages for tests of page deltas: heap-like text, and small edits in place. */
import { pseudoRandom } from './tree.js';

export const PAGE = 8192;

/** A page like PostgreSQL's heap pages: text-like tuples, so an edit in place leaves most of it predictable. */
export function heapPage(seed: number): Buffer {
  const p = Buffer.alloc(PAGE);
  const words = ['alpha', 'beta', 'gamma', 'delta', 'tuple', 'xmin', 'xmax', 'heap'];
  let x = seed * 2654435761;
  for (let at = 24; at < PAGE - 16; ) {
    x = (x * 1103515245 + 12345) >>> 0;
    const w = `${words[x % words.length]}${x % 1000};`;
    at += p.write(w, at);
  }
  p.writeUInt32LE(seed, 0);
  return p;
}

/** `p` with a few bytes changed near `at` (a tuple updated in place) and a new header LSN. */
export function editPage(p: Buffer, at: number, seed: number): Buffer {
  const out = Buffer.from(p);
  pseudoRandom(24, seed).copy(out, (at % (PAGE - 64)) + 24);
  out.writeUInt32LE(seed, 4);
  return out;
}
