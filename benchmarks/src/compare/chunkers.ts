/**
 * Chunkers compared on the same bytes: each day's files are read once and
 * fed to every chunker; a chunk counts as new when no earlier day (nor an
 * earlier file of the same day) produced the same SHA-256. New chunks are
 * compressed with zstd at Coffer's level, one by one as Coffer stores them,
 * so "stored" includes what small chunks lose to compression.
 */
import { createHash } from 'node:crypto';
import { open, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { createChunker, relationFirstBlock, type Chunker, type Chunking } from '@coffer/engine';
import { Compressor } from 'zstd-napi';

export interface ChunkerSpec {
  name: string;
  /** New chunks of a file compressed together, up to this many bytes per stored blob (default: each chunk alone). */
  groupBytes?: number;
  /** What cuts a file; `whole` keeps every file as one chunk. */
  cut: (relation: boolean) => Chunking | 'whole';
}

const cdc = (avgKiB: number): Chunking => ({ algorithm: 'fastcdc', minSize: avgKiB * 256, avgSize: avgKiB * 1024, maxSize: avgKiB * 4096 });
const fixed = (kib: number): Chunking => ({ algorithm: 'fixed', size: kib * 1024 });

export const CHUNKERS: ChunkerSpec[] = [
  ...[8, 16, 32, 64, 128].map((k) => ({ name: `FastCDC avg ${k} KiB`, cut: () => cdc(k) })),
  { name: 'fixed 8 KiB (page-aligned)', cut: () => fixed(8) },
  { name: 'fixed 64 KiB', cut: () => fixed(64) },
  { name: 'whole files', cut: () => 'whole' as const },
];
/** What Coffer does: pages for relation files, FastCDC 64 KiB for everything else. */
export const GROUPED_PAGES: ChunkerSpec = { name: '8 KiB pages, new pages of a file compressed 16 at a time', groupBytes: 128 * 1024, cut: (rel) => (rel ? fixed(8) : cdc(64)) };
export const COFFER_CHUNKING: ChunkerSpec = { name: 'Coffer: 8 KiB pages for relation files, FastCDC 64 KiB for the rest', cut: (rel) => (rel ? fixed(8) : cdc(64)) };

export interface ChunkerDay {
  day: number;
  logicalBytes: number;
  chunks: number;
  newChunks: number;
  newBytes: number;
  /** zstd-compressed size of the new chunks, one by one. */
  storedBytes: number;
}

export interface ChunkerFigures {
  name: string;
  days: ChunkerDay[];
  /** Unique chunks over all days: what the index holds. */
  uniqueChunks: number;
  /** Chunking plus SHA-256 of every chunk, one thread, in MB/s of logical bytes. */
  mbps: number;
}

export interface InputFile {
  path: string;
  relation: boolean;
}

/** Regular files under `root`, skipping what `skip` names (paths relative to root). */
export async function listFiles(root: string, skip: (rel: string) => boolean = () => false, relations = false): Promise<InputFile[]> {
  const out: InputFile[] = [];
  const walk = async (dir: string, rel: string): Promise<void> => {
    for (const ent of (await readdir(dir, { withFileTypes: true })).sort((a, b) => (a.name < b.name ? -1 : 1))) {
      const r = rel ? `${rel}/${ent.name}` : ent.name;
      if (skip(r)) continue;
      if (ent.isDirectory()) await walk(join(dir, ent.name), r);
      else if (ent.isFile()) out.push({ path: join(dir, ent.name), relation: relations && relationFirstBlock(r, 131072) !== undefined });
    }
  };
  await walk(root, '');
  return out;
}

interface Lane {
  spec: ChunkerSpec;
  /** New chunks waiting to be compressed together (grouped lanes). */
  group: Buffer[];
  groupLength: number;
  seen: Set<string>;
  ms: number;
  bytes: number;
  days: ChunkerDay[];
}

/** Follows chunkers over the days of one workload. */
export class ChunkerComparison {
  private readonly lanes: Lane[];
  private readonly zstd = new Compressor();

  constructor(specs: ChunkerSpec[], level = 3) {
    this.lanes = specs.map((spec) => ({ spec, group: [], groupLength: 0, seen: new Set(), ms: 0, bytes: 0, days: [] }));
    this.zstd.setParameters({ compressionLevel: level });
  }

  async day(day: number, files: InputFile[]): Promise<void> {
    const today = this.lanes.map((): ChunkerDay => ({ day, logicalBytes: 0, chunks: 0, newChunks: 0, newBytes: 0, storedBytes: 0 }));
    const buf = Buffer.allocUnsafe(4 << 20);
    for (const f of files) {
      const cutters = this.lanes.map((l) => l.spec.cut(f.relation));
      const chunkers: (Chunker | undefined)[] = cutters.map((c) => (c === 'whole' ? undefined : createChunker(c)));
      const whole: Buffer[] = [];
      const wholeHash = createHash('sha256');
      const take = (i: number, pieces: Buffer[]) => {
        const lane = this.lanes[i]!;
        const t0 = performance.now();
        const ids = pieces.map((p) => createHash('sha256').update(p).digest('base64'));
        lane.ms += performance.now() - t0;
        pieces.forEach((p, j) => this.count(lane, today[i]!, ids[j]!, p));
      };
      const fh = await open(f.path, 'r');
      try {
        for (;;) {
          const { bytesRead } = await fh.read(buf, 0, buf.length, null);
          if (bytesRead === 0) break;
          const data = buf.subarray(0, bytesRead);
          chunkers.forEach((c, i) => {
            const lane = this.lanes[i]!;
            lane.bytes += bytesRead;
            today[i]!.logicalBytes += bytesRead;
            if (!c) return;
            const t0 = performance.now();
            const pieces = c.push(data);
            lane.ms += performance.now() - t0;
            take(i, pieces);
          });
          if (cutters.includes('whole')) {
            const t0 = performance.now();
            wholeHash.update(data);
            const spent = performance.now() - t0;
            cutters.forEach((c, i) => c === 'whole' && (this.lanes[i]!.ms += spent));
            whole.push(Buffer.from(data));
          }
        }
      } finally {
        await fh.close();
      }
      chunkers.forEach((c, i) => c && take(i, c.finish()));
      this.lanes.forEach((l, i) => this.flush(l, today[i]!));
      if (cutters.includes('whole')) {
        const id = wholeHash.digest('base64');
        const all = Buffer.concat(whole);
        cutters.forEach((c, i) => c === 'whole' && this.count(this.lanes[i]!, today[i]!, id, all));
      }
    }
    this.lanes.forEach((l, i) => l.days.push(today[i]!));
  }

  private count(lane: Lane, d: ChunkerDay, id: string, piece: Buffer): void {
    d.chunks++;
    if (lane.seen.has(id)) return;
    lane.seen.add(id);
    d.newChunks++;
    d.newBytes += piece.length;
    if (lane.spec.groupBytes) {
      lane.group.push(Buffer.from(piece));
      lane.groupLength += piece.length;
      if (lane.groupLength >= lane.spec.groupBytes) this.flush(lane, d);
      return;
    }
    const packed = piece.length > 0 ? this.zstd.compress(piece).length : 0;
    // Coffer stores a chunk raw when zstd does not shrink it.
    d.storedBytes += Math.min(packed, piece.length);
  }

  private flush(lane: Lane, d: ChunkerDay): void {
    if (lane.group.length === 0) return;
    const all = Buffer.concat(lane.group);
    d.storedBytes += Math.min(this.zstd.compress(all).length, all.length);
    lane.group = [];
    lane.groupLength = 0;
  }

  figures(): ChunkerFigures[] {
    return this.lanes.map((l) => ({ name: l.spec.name, days: l.days, uniqueChunks: l.seen.size, mbps: l.bytes / 1e6 / (l.ms / 1000) }));
  }
}
