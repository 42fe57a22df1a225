#!/usr/bin/env node
// Committed entry point, so npm can link the bin before the first build. It runs the
// bundle `npm run build` makes (packages/cli/bundle: a few files instead of ~200 modules
// to load on every archive_command call); dist/main.js is the same program unbundled.
// V8's compile cache spares each short run (archive_command starts one per WAL segment)
// compiling the bundle again. It lives in the user's own cache directory, never a shared
// /tmp: what is in it becomes code. Without a home, or where it cannot be written, Node
// runs without it.
const { enableCompileCache } = await import('node:module');
const cacheHome = process.env.XDG_CACHE_HOME || (process.env.HOME ? `${process.env.HOME}/.cache` : undefined);
if (enableCompileCache && cacheHome) {
  try {
    enableCompileCache(`${cacheHome}/coffer/compile-cache`);
  } catch {
    // Not a reason to fail a command.
  }
}
// archive_command's common case: a file an earlier call archived ahead is confirmed from the note it left
// (dist/wal-ack.js, which loads nothing but Node's own), without opening the repository. Anything else, or
// any doubt, runs the full program.
if (process.argv.includes('wal-push')) {
  const ack = await import('../dist/wal-ack.js').catch(() => undefined);
  if (ack && (await ack.confirmFromAck(process.argv.slice(2), process.env, process.cwd()))) process.exit(0);
}
// restore_command's common case: the segment asked for was prefetched into the spool (dist/wal-spool.js: a rename,
// no repository opened).
if (process.argv.includes('wal-fetch')) {
  const spool = await import('../dist/wal-spool.js').catch(() => undefined);
  const served = spool ? await spool.serveFromSpool(process.argv.slice(2), process.env, process.cwd()) : undefined;
  if (served === 'served') process.exit(0);
}
import('../bundle/main.js').catch((e) => {
  if (e && e.code === 'ERR_MODULE_NOT_FOUND' && String(e.message).includes('bundle/main.js')) {
    process.stderr.write('coffer: not built yet; run `npm run build` at the repository root\n');
    process.exit(1);
  }
  throw e;
});
