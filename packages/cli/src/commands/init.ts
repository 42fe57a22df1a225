/** `coffer init`: create a repository; the key given becomes its first key. */
import { Repository } from '@coffer/engine';
import { intOption, type CliContext } from '../context.js';
import { initProviders, openStore } from '../repo-options.js';

export function register(ctx: CliContext): void {
  const { program, io, globals, say, adopt, audit } = ctx;
  program
    .command('init')
    .description('create a repository (the passphrase or key file given becomes its first key)')
    .option('--chunk-min <bytes>', 'FastCDC minimum chunk size', intOption('--chunk-min', 64, 64 << 20))
    .option('--chunk-avg <bytes>', 'FastCDC average chunk size', intOption('--chunk-avg', 256, 64 << 20))
    .option('--chunk-max <bytes>', 'FastCDC maximum chunk size', intOption('--chunk-max', 1024, 64 << 20))
    .option('--relation-chunk-size <bytes>', 'PostgreSQL relation files: fixed chunks of this many bytes, a multiple of 8192 (default 8192; 0 = FastCDC)', intOption('--relation-chunk-size', 0, 16 << 20))
    .option('--relation-group-size <bytes>', 'PostgreSQL relation files: new chunks compressed together up to this many bytes (default 131072)', intOption('--relation-group-size', 8192, 16 << 20))
    .option('--pack-size <bytes>', 'target pack size', intOption('--pack-size', 64 << 10, 1 << 30))
    .option('--compression-level <n>', 'zstd level 1–19', intOption('--compression-level', 1, 19))
    .option('--page-delta-depth <n>', 'PostgreSQL relation files: a changed page is stored as a delta against its previous version, at most this many deltas deep (default 8; 0 = whole pages, format 2)', intOption('--page-delta-depth', 0, 32))
    .action(async (o: { chunkMin?: number; chunkAvg?: number; chunkMax?: number; relationChunkSize?: number; relationGroupSize?: number; packSize?: number; compressionLevel?: number; pageDeltaDepth?: number }) => {
      const store = await openStore(globals(), io.env);
      const providers = await initProviders(globals(), io.env, (line) => io.stderr.write(`coffer: ${line}\n`));
      const chunker = { ...(o.chunkMin ? { minSize: o.chunkMin } : {}), ...(o.chunkAvg ? { avgSize: o.chunkAvg } : {}), ...(o.chunkMax ? { maxSize: o.chunkMax } : {}) };
      const repo = await Repository.init(store, providers, {
        chunker,
        ...(o.relationChunkSize !== undefined ? { relationChunkSize: o.relationChunkSize } : {}),
        ...(o.relationGroupSize !== undefined ? { relationGroupBytes: o.relationGroupSize } : {}),
        ...(o.packSize ? { packSize: o.packSize } : {}), ...(o.compressionLevel ? { compressionLevel: o.compressionLevel } : {}),
        ...(o.pageDeltaDepth !== undefined ? { pageDeltaDepth: o.pageDeltaDepth } : {}) });
      adopt(repo);
      audit({ repositoryId: repo.config.repositoryId, location: repo.location });
      say(`initialised repository ${repo.config.repositoryId} at ${repo.location}`);
    });
}
