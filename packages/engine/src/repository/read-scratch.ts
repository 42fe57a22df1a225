/**
 * The buffer that decompressing manifests one after another reuses (up to
 * tens of megabytes each, read by check once per pass and by garbage
 * collection twice). Stored bytes are not kept as well: reading them into a
 * buffer held for the whole run raised gc's peak RSS at 50 million chunks
 * from 228 to 257 MiB (measured), while a buffer read and dropped goes back to
 * the system at once under the CLI's fixed mmap threshold. What is
 * decompressed into it is valid until the next use.
 * @internal
 */
export class ReadScratch {
  private plain: Buffer = Buffer.alloc(0);

  /** A buffer of at least `size` bytes to decompress into. */
  plainFor(size: number): Buffer {
    if (size > this.plain.length) this.plain = Buffer.allocUnsafeSlow(size);
    return this.plain;
  }
}
