/**
 * Checks that run on a file's bytes as the chunk pipeline reads them — the
 * pipeline's only hook for what a source knows about its files (PostgreSQL
 * plugs its page checksums in here). A check is named by an ES module and
 * JSON options rather than passed as a function, so that worker threads can
 * load it for themselves.
 */

/** Options that survive `postMessage` and JSON alike. */
export type ReadCheckOptions = string | number | boolean | null | ReadCheckOptions[] | { [key: string]: ReadCheckOptions };

export interface ReadCheckSpec {
  /** URL of an ES module exporting `createReadCheck: ReadCheckFactory`. */
  module: string;
  options: ReadCheckOptions;
}

/** The file being read, for checks that must look again (a torn read). */
export interface CheckedFile {
  /** Reads `length` bytes at `position`; fewer at the end of the file. */
  read(position: number, length: number): Promise<Buffer>;
}

export interface ReadCheck {
  /** Bytes read, in order, from `start` on; throws a typed error to fail the file. */
  check(data: Buffer): Promise<void>;
  /**
   * Blocks found damaged that do not fail the file, in the source's own
   * numbering (PostgreSQL: relation block numbers): the file is stored as
   * read and its manifest entry lists them. A damaged source is exactly when
   * a backup matters.
   */
  damaged?(): number[];
}

/** What a check module exports as `createReadCheck`. `start` is the offset of the first byte the check sees. */
export type ReadCheckFactory = (options: ReadCheckOptions, file: CheckedFile, start: number) => ReadCheck;

const factories = new Map<string, Promise<ReadCheckFactory>>();

/** The factory a spec names, its module loaded once per thread. */
export function loadReadCheck(spec: ReadCheckSpec): Promise<ReadCheckFactory> {
  let f = factories.get(spec.module);
  if (!f) {
    f = import(spec.module).then((m: { createReadCheck?: ReadCheckFactory }) => {
      if (typeof m.createReadCheck !== 'function') throw new TypeError(`read check module ${spec.module} exports no createReadCheck`);
      return m.createReadCheck;
    });
    factories.set(spec.module, f);
  }
  return f;
}
