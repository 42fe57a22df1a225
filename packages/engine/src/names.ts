/**
 * File names are bytes on Linux, not text. Coffer keeps paths as JavaScript
 * strings (manifests are JSON, paths are joined and compared as strings) and
 * carries a name that is not valid UTF-8 the way Python's "surrogateescape"
 * does: each byte that is not part of a valid UTF-8 sequence becomes the lone
 * surrogate U+DC80–U+DCFF of the same low byte. Valid UTF-8 never decodes to
 * a lone surrogate, so the mapping is reversible, and JSON keeps lone
 * surrogates as `\udcXX` escapes. At every file-system call `fsPath` turns
 * such a string back into the exact bytes (Node would otherwise write U+FFFD).
 */

const ESCAPE_BASE = 0xdc00;

/** The length of a valid UTF-8 sequence starting at `i`, or 0 when the bytes there are not one. */
function sequenceLength(b: Uint8Array, i: number): number {
  const c = b[i]!;
  if (c < 0x80) return 1;
  const cont = (k: number) => i + k < b.length && (b[i + k]! & 0xc0) === 0x80;
  if (c >= 0xc2 && c <= 0xdf) return cont(1) ? 2 : 0;
  if (c >= 0xe0 && c <= 0xef) {
    if (!cont(1) || !cont(2)) return 0;
    const c1 = b[i + 1]!;
    if (c === 0xe0 && c1 < 0xa0) return 0; // overlong
    if (c === 0xed && c1 >= 0xa0) return 0; // UTF-16 surrogates are not UTF-8
    return 3;
  }
  if (c >= 0xf0 && c <= 0xf4) {
    if (!cont(1) || !cont(2) || !cont(3)) return 0;
    const c1 = b[i + 1]!;
    if (c === 0xf0 && c1 < 0x90) return 0; // overlong
    if (c === 0xf4 && c1 >= 0x90) return 0; // beyond U+10FFFF
    return 4;
  }
  return 0;
}

/** A name (or path) read as bytes, as Coffer holds it. */
export function decodeName(raw: Uint8Array): string {
  const buf = Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength);
  const text = buf.toString('utf8');
  if (Buffer.byteLength(text, 'utf8') === buf.length && !text.includes('\ufffd')) return text;
  let out = '';
  for (let i = 0; i < buf.length; ) {
    const n = sequenceLength(buf, i);
    if (n === 0) {
      out += String.fromCharCode(ESCAPE_BASE + buf[i]!);
      i++;
    } else {
      out += buf.toString('utf8', i, i + n);
      i += n;
    }
  }
  return out;
}

/** Whether `p` carries escaped bytes (or, harmlessly, an astral character whose low half looks like one). */
function mayCarryBytes(p: string): boolean {
  return /[\udc80-\udcff]/.test(p);
}

/** The exact bytes of a path `decodeName` produced. */
export function encodeName(p: string): Buffer {
  const parts: Buffer[] = [];
  let run = '';
  for (const ch of p) {
    const cp = ch.codePointAt(0)!;
    if (cp >= 0xdc80 && cp <= 0xdcff) {
      if (run) parts.push(Buffer.from(run, 'utf8'));
      run = '';
      parts.push(Buffer.of(cp - ESCAPE_BASE));
    } else run += ch;
  }
  if (run) parts.push(Buffer.from(run, 'utf8'));
  return Buffer.concat(parts);
}

/** What to hand the file system for path `p`: the string itself, or its exact bytes when it carries escaped ones. */
export function fsPath(p: string): string | Buffer {
  return mayCarryBytes(p) ? encodeName(p) : p;
}

/** `p` for people: escaped bytes shown as `\xNN`. */
export function displayPath(p: string): string {
  if (!mayCarryBytes(p)) return p;
  let out = '';
  for (const ch of p) {
    const cp = ch.codePointAt(0)!;
    out += cp >= 0xdc80 && cp <= 0xdcff ? `\\x${(cp - ESCAPE_BASE).toString(16).padStart(2, '0')}` : ch;
  }
  return out;
}
