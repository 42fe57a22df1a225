/**
 * The API reference builds from the TSDoc of every package's public entry
 * (`npm run docs`, TypeDoc with warnings as errors): a public signature that
 * names a type the package does not export fails here.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const run = promisify(execFile);
const ROOT = fileURLToPath(new URL('../', import.meta.url));

describe('API reference', () => {
  it('builds for every package without a warning, and documents the public entry points', async () => {
    const out = await mkdtemp(join(tmpdir(), 'coffer-api-'));
    try {
      await run(process.execPath, [join(ROOT, 'node_modules', 'typedoc', 'bin', 'typedoc'), '--out', out], { cwd: ROOT, maxBuffer: 16 << 20 });
      const index = await readFile(join(out, 'index.html'), 'utf8');
      for (const pkg of ['@coffer/engine', '@coffer/aws', '@coffer/verify', '@coffer/failover', '@coffer/agent', '@coffer/cli']) expect(index).toContain(pkg);
      const modules = await readFile(join(out, 'modules', '_coffer_engine.index.html'), 'utf8').catch(() => '');
      for (const name of ['Repository', 'KeyRing', 'SealedObjects', 'backupFiles', 'restoreBackup', 'walPush']) expect(modules).toContain(name);
    } finally {
      await rm(out, { recursive: true, force: true });
    }
  }, 180_000);
});
