/**
 * CommonJS dependencies (the native bindings, the chunker's WebAssembly) are
 * required, not imported: importing a CommonJS module makes Node parse its
 * source for export names first, 5–15 ms a package measured here — paid by
 * every command (archive_command calls among them) and by every worker
 * thread.
 */
import { createRequire } from 'node:module';

export const requireCommonJs = createRequire(import.meta.url);
