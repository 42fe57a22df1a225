import { availableParallelism } from 'node:os';
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['packages/*/test/**/*.test.ts', 'test/**/*.test.ts'],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    pool: 'forks',
    // Most files wait on PostgreSQL, radosgw and timers rather than compute: two at a time on a 2-core
    // machine ran the suite in 27 minutes instead of 38, every test passing (vitest's default there is one).
    maxWorkers: Math.max(2, availableParallelism() - 1),
    globalSetup: ['./test/support/s3-global-setup.ts'],
    // The engines field states the Node lines we support; the AWS SDK's notice about its own would fill the log.
    env: { AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true' },
    reporters: ['default', './test/support/summary-reporter.ts'],
  },
});
