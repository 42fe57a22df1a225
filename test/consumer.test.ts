/**
 * The packages as a user gets them: `npm pack` of each workspace package,
 * installed into a scratch project outside the workspace, which imports
 * `@coffer/engine` with full types (strict TypeScript), runs a small backup
 * and restore, and cannot reach the engine's internals. `.ci/run` runs this on
 * each supported Node line.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const run = promisify(execFile);
const ROOT = fileURLToPath(new URL('../', import.meta.url));
const TSC = join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
let dir: string;

const CONSUMER = `
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { backupFiles, FileStore, LocalKeyProvider, Repository, restoreBackup, type BackupSummary, type RestoreResult } from '@coffer/engine';

const work = process.argv[2]!;
await mkdir(join(work, 'src', 'sub'), { recursive: true });
await writeFile(join(work, 'src', 'sub', 'hello.txt'), 'hello from a consumer\\n'.repeat(1000));
const keyFile = join(work, 'key');
await writeFile(keyFile, LocalKeyProvider.newKeyFileContent(), { mode: 0o600 });
const repo = await Repository.init(new FileStore(join(work, 'repo')), await LocalKeyProvider.fromKeyFile(keyFile));
const { key } = await backupFiles(repo, join(work, 'src'));
const listed: BackupSummary[] = await repo.listBackups();
const restored: RestoreResult = await restoreBackup(repo, key, join(work, 'out'));
const same = (await readFile(join(work, 'out', 'sub', 'hello.txt'), 'utf8')) === (await readFile(join(work, 'src', 'sub', 'hello.txt'), 'utf8'));
console.log(JSON.stringify({ backups: listed.length, files: restored.files, same }));
`;

const INTERNAL = `
import { IdTable } from '@coffer/engine';
export const t = new IdTable(1);
`;

const tsconfig = (files: string[]) =>
  JSON.stringify({
    compilerOptions: { strict: true, module: 'nodenext', moduleResolution: 'nodenext', target: 'es2022', outDir: 'dist', skipLibCheck: false, typeRoots: [join(ROOT, 'node_modules', '@types')], types: ['node'] },
    files,
  });

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'coffer-consumer-'));
  const packed = await run('npm', ['pack', '--json', '--pack-destination', dir, '-w', '@coffer/engine', '-w', '@coffer/aws', '-w', '@coffer/verify', '-w', '@coffer/agent', '-w', '@coffer/cli'], { cwd: ROOT, maxBuffer: 16 << 20 });
  const files = (JSON.parse(packed.stdout) as { name: string; filename: string }[]).map((p) => [p.name, `file:./${p.filename.replace(/^@/, '').replace('/', '-')}`]);
  await writeFile(join(dir, 'package.json'), JSON.stringify({ name: 'coffer-consumer', private: true, type: 'module', dependencies: Object.fromEntries(files) }, null, 2));
  await run('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline', '--loglevel=error'], { cwd: dir, maxBuffer: 16 << 20 });
}, 300_000);
afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('the packed packages in a project of their own', () => {
  it('type-check under strict TypeScript and run a backup and a restore', async () => {
    await writeFile(join(dir, 'consumer.ts'), CONSUMER);
    await writeFile(join(dir, 'tsconfig.json'), tsconfig(['consumer.ts']));
    await run(process.execPath, [TSC, '-p', 'tsconfig.json'], { cwd: dir });
    const work = await mkdtemp(join(tmpdir(), 'coffer-consumer-run-'));
    try {
      const out = await run(process.execPath, [join(dir, 'dist', 'consumer.js'), work], { cwd: dir });
      expect(JSON.parse(out.stdout)).toEqual({ backups: 1, files: 1, same: true });
    } finally {
      await rm(work, { recursive: true, force: true });
    }
  });

  it('the coffer command runs from the installed package', async () => {
    const out = await run(process.execPath, [join(dir, 'node_modules', '@coffer', 'cli', 'bin', 'coffer.js'), '--version'], { cwd: dir });
    expect(out.stdout).toMatch(/^coffer \d+\.\d+\.\d+/);
  });

  it('internals are not part of the public surface', async () => {
    await writeFile(join(dir, 'internal.ts'), INTERNAL);
    await writeFile(join(dir, 'tsconfig.internal.json'), tsconfig(['internal.ts']));
    const r = await run(process.execPath, [TSC, '-p', 'tsconfig.internal.json'], { cwd: dir }).then(
      () => ({ ok: true, out: '' }),
      (e: { stdout?: string }) => ({ ok: false, out: e.stdout ?? '' }),
    );
    expect(r.ok).toBe(false);
    expect(r.out).toContain(`has no exported member 'IdTable'`);
    expect(JSON.parse(await readFile(join(dir, 'node_modules', '@coffer', 'engine', 'package.json'), 'utf8')).exports['./internal']).toBeUndefined();
  });
});
