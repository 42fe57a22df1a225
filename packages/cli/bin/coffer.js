#!/usr/bin/env node
// Committed entry point, so npm can link the bin before the first build. It runs the
// bundle `npm run build` makes (packages/cli/bundle: a few files instead of ~200 modules
// to load on every archive_command call); dist/main.js is the same program unbundled.
import('../bundle/main.js').catch((e) => {
  if (e && e.code === 'ERR_MODULE_NOT_FOUND' && String(e.message).includes('bundle/main.js')) {
    process.stderr.write('coffer: not built yet; run `npm run build` at the repository root\n');
    process.exit(1);
  }
  throw e;
});
