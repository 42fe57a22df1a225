#!/usr/bin/env node
// Committed entry point, so npm can link the bin before the first build.
import('../dist/main.js').catch((e) => {
  if (e && e.code === 'ERR_MODULE_NOT_FOUND' && String(e.message).includes('dist/main.js')) {
    process.stderr.write('coffer: not built yet; run `npm run build` at the repository root\n');
    process.exit(1);
  }
  throw e;
});
