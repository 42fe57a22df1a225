/**
 * zstd with reused contexts, one `Zstd` per thread: contexts are costly to
 * create, and compressing into a scratch buffer the object keeps leaves no
 * garbage on the hot path. Knows nothing of keys or blob layouts.
 */
import { requireCommonJs } from '../commonjs.js';

const { Compressor, Decompressor } = requireCommonJs('zstd-napi') as typeof import('zstd-napi');
const { CCtx, DCtx, compressBound, getFrameContentSize } = requireCommonJs('zstd-napi/binding.js') as typeof import('zstd-napi/binding.js');

export class Zstd {
  private readonly level: number;
  private readonly compressor = new Compressor();
  private readonly decompressor = new Decompressor();
  private readonly cctx = new CCtx();
  private readonly dctx = new DCtx();
  private scratch = Buffer.alloc(0);

  constructor(level: number) {
    this.level = level;
    this.compressor.setParameters({ compressionLevel: level, contentSizeFlag: true, checksumFlag: false });
  }

  /**
   * zstd of `plaintext` in the scratch buffer (valid until the next call), or
   * `plaintext` itself when compressing does not shrink it.
   */
  shrink(plaintext: Uint8Array): Uint8Array {
    const bound = compressBound(plaintext.byteLength);
    if (this.scratch.length < bound) this.scratch = Buffer.allocUnsafeSlow(Math.max(bound, 300 * 1024));
    const packedLength = this.cctx.compress(this.scratch, plaintext, this.level);
    return packedLength < plaintext.byteLength ? this.scratch.subarray(0, packedLength) : plaintext;
  }

  /** The content size a frame declares, or null when it declares none. Throws on a malformed frame. */
  frameSize(frame: Uint8Array): number | null {
    return getFrameContentSize(frame);
  }

  /** Decompresses `frame` into `into` when its declared size fits there (a view of `into`), else into a new buffer. Throws on damage. */
  decompressInto(frame: Uint8Array, into?: Buffer): Buffer {
    const size = getFrameContentSize(frame);
    if (into && size !== null && size <= into.length) return into.subarray(0, this.dctx.decompress(into, frame));
    return this.decompressor.decompress(frame);
  }

  /** A new buffer holding the zstd frame of `data` (for metadata objects; no size limit). */
  compress(data: Uint8Array): Buffer {
    return this.compressor.compress(data);
  }

  decompress(data: Uint8Array): Buffer {
    return this.decompressor.decompress(data);
  }
}
