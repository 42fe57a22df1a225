#!/usr/bin/env node
// Installs Coffer on a host from this checkout, the way a release is installed:
// the workspace packages are packed (`npm pack`, as they would be published),
// installed into PREFIX with their runtime dependencies only, and
// PREFIX/bin/coffer links to the command, so that archive_command, cron, systemd
// units and Kubernetes manifests call `coffer`, not a path into a checkout.
//
//   npm run build && node scripts/install.mjs --prefix /opt/coffer [--link /usr/local/bin]
//
// --link DIR also puts `coffer` in DIR (on PATH). Run it again to upgrade: the
// packages are replaced whole. test/consumer.test.ts installs this way into a
// scratch prefix.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, rmSync, symlinkSync, writeFileSync, readdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../', import.meta.url));
const PACKAGES = ['@coffer/engine', '@coffer/aws', '@coffer/verify', '@coffer/failover', '@coffer/agent', '@coffer/cli'];

function option(name) {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

const prefixArg = option('--prefix');
if (!prefixArg) {
  process.stderr.write('usage: node scripts/install.mjs --prefix DIR [--link DIR]\n');
  process.exit(2);
}
const prefix = resolve(prefixArg);
if (!existsSync(join(ROOT, 'packages/cli/bundle/main.js'))) {
  process.stderr.write('install: not built yet; run `npm run build` first\n');
  process.exit(1);
}
const tarballs = join(prefix, 'packages');
rmSync(tarballs, { recursive: true, force: true });
mkdirSync(tarballs, { recursive: true });
const packed = JSON.parse(execFileSync('npm', ['pack', '--json', '--pack-destination', tarballs, ...PACKAGES.flatMap((p) => ['-w', p])], { cwd: ROOT, encoding: 'utf8', maxBuffer: 16 << 20 }));
const dependencies = Object.fromEntries(packed.map((p) => [p.name, `file:./packages/${p.filename.replace(/^@/, '').replace('/', '-')}`]));
writeFileSync(join(prefix, 'package.json'), JSON.stringify({ name: 'coffer-install', private: true, type: 'module', dependencies }, null, 2) + '\n');
execFileSync('npm', ['install', '--omit=dev', '--no-audit', '--no-fund', '--prefer-offline', '--loglevel=error'], { cwd: prefix, stdio: ['ignore', 'inherit', 'inherit'] });
const bin = join(prefix, 'bin');
mkdirSync(bin, { recursive: true });
const command = join(prefix, 'node_modules', '@coffer', 'cli', 'bin', 'coffer');
for (const dir of [bin, option('--link')].filter(Boolean)) {
  const link = join(resolve(dir), 'coffer');
  rmSync(link, { force: true });
  symlinkSync(command, link);
}
process.stdout.write(`installed ${readdirSync(tarballs).join(', ')} into ${prefix}; the command is ${join(bin, 'coffer')}\n`);
