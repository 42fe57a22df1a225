/** The README's first command: the demo runs, on Debian's server and on the embedded fallback. */
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const DEMO = fileURLToPath(new URL('../scripts/demo.mjs', import.meta.url));

describe('npm run demo', () => {
  for (const server of ['default', 'embedded']) {
    it(`restores exactly the rows up to the target time (${server} PostgreSQL)`, () => {
      const r = spawnSync(process.execPath, [DEMO], { encoding: 'utf8', env: { ...process.env, COFFER_DEMO_POSTGRES: server }, timeout: 240_000 });
      expect(r.stderr).not.toMatch(/Error/);
      expect(r.status).toBe(0);
      expect(r.stdout).toMatch(/restored cluster holds 1050 orders \(last id 1050\); the source holds 1100: exactly the rows committed up to the target/);
      expect(r.stdout).toContain('demo: cleaned up');
    }, 300_000);
  }
});
