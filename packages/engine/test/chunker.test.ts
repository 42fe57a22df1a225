import fc from 'fast-check';
import { get_chunks } from 'fastcdc-wasm';
import { describe, expect, it } from 'vitest';
import { chunkBuffer, createChunker, FixedChunker, InvalidArgumentError, PAGE_SIZE, StreamingChunker, validateFixedChunker, type ChunkerParams } from '@coffer/engine';

const SMALL: ChunkerParams = { minSize: 256, avgSize: 1024, maxSize: 4096 };

/** The reference: fastcdc-wasm over the whole input at once. */
function referenceBoundaries(data: Uint8Array, p: ChunkerParams): number[] {
  if (data.length === 0) return [];
  return [...get_chunks(data, p.minSize, p.avgSize, p.maxSize)].slice(1);
}

function streamBoundaries(data: Uint8Array, splits: number[], p: ChunkerParams): number[] {
  const c = new StreamingChunker(p);
  const ends: number[] = [];
  let pos = 0;
  const take = (chunks: Buffer[]) => {
    for (const ch of chunks) ends.push((pos += ch.length));
  };
  let prev = 0;
  for (const s of [...splits].sort((a, b) => a - b)) {
    take(c.push(data.subarray(prev, s)));
    prev = s;
  }
  take(c.push(data.subarray(prev)));
  take(c.finish());
  return ends;
}

/** Inputs with structure (repeats) and noise, so both hash masks matter. */
const inputArb = fc
  .tuple(fc.uint8Array({ minLength: 0, maxLength: 20_000 }), fc.integer({ min: 0, max: 40 }), fc.uint8Array({ minLength: 0, maxLength: 5000 }))
  .map(([a, reps, b]) => Buffer.concat([a, ...Array.from({ length: reps }, () => b.subarray(0, 900)), b, a]));

describe('StreamingChunker', () => {
  it('gives the same boundaries as one-shot FastCDC for every split of the input', () => {
    fc.assert(
      fc.property(inputArb, fc.array(fc.nat(), { maxLength: 12 }), (data, rawSplits) => {
        const splits = rawSplits.map((s) => (data.length ? s % (data.length + 1) : 0));
        expect(streamBoundaries(data, splits, SMALL)).toEqual(referenceBoundaries(data, SMALL));
      }),
      { numRuns: 300 },
    );
  });

  it('byte-at-a-time feeding matches too', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 0, maxLength: 12_000 }), (data) => {
        const splits = Array.from({ length: data.length }, (_, i) => i);
        expect(streamBoundaries(data, splits, SMALL)).toEqual(referenceBoundaries(data, SMALL));
      }),
      { numRuns: 20 },
    );
  });

  it('matches with the default parameters on multi-MiB inputs split at read-like sizes', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 2 ** 31 }), fc.array(fc.integer({ min: 1, max: 3_000_000 }), { maxLength: 6 }), (seed, rawSplits) => {
        const data = Buffer.alloc(3_000_000);
        let x = seed;
        for (let i = 0; i < data.length; i++) {
          x = (x * 1103515245 + 12345) >>> 0;
          data[i] = x >>> 24;
        }
        const p = { minSize: 16384, avgSize: 65536, maxSize: 262144 };
        expect(streamBoundaries(data, rawSplits, p)).toEqual(referenceBoundaries(data, p));
      }),
      { numRuns: 8 },
    );
  });

  it('released chunkers hand their buffers on without touching a live chunker’s bytes, in any interleaving', () => {
    // Up to three files chunked at once (as a thread does), each released when done and a new one started:
    // every chunk, checked as it is returned, must hold the input's bytes at its offset.
    fc.assert(
      fc.property(fc.array(inputArb, { minLength: 1, maxLength: 6 }), fc.array(fc.tuple(fc.nat(2), fc.integer({ min: 1, max: 7000 })), { minLength: 1, maxLength: 80 }), (files, steps) => {
        type Live = { data: Buffer; fed: number; emitted: number; chunker: StreamingChunker };
        const queue = files.map((f) => Buffer.from(f));
        const lanes: (Live | undefined)[] = [undefined, undefined, undefined];
        const check = (l: Live, chunks: Buffer[]) => {
          for (const ch of chunks) {
            expect(ch.equals(l.data.subarray(l.emitted, l.emitted + ch.length))).toBe(true);
            l.emitted += ch.length;
          }
        };
        const advance = (lane: number, bytes: number) => {
          let l = lanes[lane];
          if (!l) {
            const data = queue.shift();
            if (!data) return;
            l = lanes[lane] = { data, fed: 0, emitted: 0, chunker: new StreamingChunker(SMALL) };
          }
          const piece = l.data.subarray(l.fed, l.fed + bytes);
          l.fed += piece.length;
          check(l, l.chunker.push(piece));
          if (l.fed === l.data.length) {
            check(l, l.chunker.finish());
            expect(l.emitted).toBe(l.data.length);
            l.chunker.release();
            lanes[lane] = undefined;
          }
        };
        for (const [lane, bytes] of steps) advance(lane, bytes);
        for (let lane = 0; lane < lanes.length; lane++) while (lanes[lane] || queue.length > 0) advance(lane, 7000);
      }),
      { numRuns: 200 },
    );
  });

  it('chunks concatenate to the input and respect min/max (all but the last ≥ min)', () => {
    fc.assert(
      fc.property(inputArb, (data) => {
        const chunks = chunkBuffer(data, SMALL);
        expect(Buffer.concat(chunks).equals(Buffer.from(data))).toBe(true);
        chunks.forEach((ch, i) => {
          expect(ch.length).toBeLessThanOrEqual(SMALL.maxSize);
          if (i < chunks.length - 1) expect(ch.length).toBeGreaterThanOrEqual(SMALL.minSize);
        });
      }),
    );
  });

  it('rejects parameters FastCDC cannot use, naming them', () => {
    for (const bad of [
      { minSize: 10, avgSize: 1024, maxSize: 4096 },
      { minSize: 2048, avgSize: 1024, maxSize: 4096 },
      { minSize: 256, avgSize: 8192, maxSize: 4096 },
      { minSize: 256.5, avgSize: 1024, maxSize: 4096 },
    ]) {
      expect(() => new StreamingChunker(bad)).toThrow(InvalidArgumentError);
      expect(() => new StreamingChunker(bad)).toThrow(/chunker parameters/);
    }
  });
});

describe('FixedChunker', () => {
  it('cuts every `size` bytes from the start, whatever the pieces it is fed, and the chunks concatenate to the input', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 0, maxLength: 40_000 }), fc.array(fc.nat(40_000), { maxLength: 12 }), fc.integer({ min: 1, max: 9000 }), (data, splits, size) => {
        const c = new FixedChunker(size);
        const pieces: Buffer[] = [];
        let prev = 0;
        for (const s of [...splits].map((s) => Math.min(s, data.length)).sort((a, b) => a - b)) {
          // Views are valid only until the next call: copy them out as a caller that keeps them must.
          for (const ch of c.push(data.subarray(prev, s))) pieces.push(Buffer.from(ch));
          prev = s;
        }
        for (const ch of c.push(data.subarray(prev))) pieces.push(Buffer.from(ch));
        for (const ch of c.finish()) pieces.push(Buffer.from(ch));
        expect(Buffer.concat(pieces).equals(Buffer.from(data))).toBe(true);
        expect(pieces.slice(0, -1).every((p) => p.length === size)).toBe(true);
        expect(pieces.length).toBe(Math.ceil(data.length / size));
        expect(pieces.every((p) => p.length > 0)).toBe(true);
      }),
    );
  });

  it('createChunker and chunkBuffer pick the algorithm the parameters name', () => {
    const data = Buffer.alloc(3 * PAGE_SIZE + 100, 7);
    expect(chunkBuffer(data, { algorithm: 'fixed', size: PAGE_SIZE }).map((c) => c.length)).toEqual([PAGE_SIZE, PAGE_SIZE, PAGE_SIZE, 100]);
    const cdc = { algorithm: 'fastcdc' as const, ...SMALL };
    expect(chunkBuffer(data, cdc).map((c) => c.length)).toEqual(chunkBuffer(data, SMALL).map((c) => c.length));
    expect(createChunker({ algorithm: 'fixed', size: PAGE_SIZE })).toBeInstanceOf(FixedChunker);
  });

  it('relation chunk sizes must be whole pages, named in the error', () => {
    for (const size of [4096, PAGE_SIZE + 1, 0, 32 * 1024 * 1024]) {
      expect(() => validateFixedChunker({ algorithm: 'fixed', size })).toThrow(/relation chunk size/);
    }
    expect(validateFixedChunker({ algorithm: 'fixed', size: 8 * PAGE_SIZE }).size).toBe(8 * PAGE_SIZE);
  });
});
