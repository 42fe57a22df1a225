/**
 * The packages as a user gets them: `npm pack` of each workspace package,
 * installed into a scratch project outside the workspace, which imports
 * `@coffer/engine` with full types (strict TypeScript), runs a small backup
 * and restore, and cannot reach the engine's internals. `.ci/run` runs this on
 * each supported Node line.
 */
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
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
  // Installed as an operator installs it (README): packed, into a prefix, with `coffer` in PREFIX/bin.
  await run(process.execPath, [join(ROOT, 'scripts', 'install.mjs'), '--prefix', dir], { cwd: ROOT, maxBuffer: 16 << 20 });
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

  it('the coffer command runs from the installed package, found on PATH, and checks the example policies', async () => {
    const env = { ...process.env, PATH: `${join(dir, 'bin')}:${process.env.PATH}` };
    const out = await run('coffer', ['--version'], { cwd: dir, env });
    expect(out.stdout).toMatch(/^coffer \d+\.\d+\.\d+/);
    const checked = await run('coffer', ['policy', 'check', '--policy', join(ROOT, 'config', 'backup-policy.yaml')], { cwd: dir, env });
    expect(checked.stdout).toContain('valid');
    // The policy in the Kubernetes manifest is a valid one too.
    const manifest = await readFile(join(ROOT, 'deploy', 'kubernetes', 'coffer-agent.yaml'), 'utf8');
    const policy = /backup-policy\.yaml: \|\n((?: {4}.*\n|\n)+)/.exec(manifest)![1]!.replace(/^ {4}/gm, '');
    await writeFile(join(dir, 'k8s-policy.yaml'), policy);
    expect((await run('coffer', ['policy', 'check', '--policy', join(dir, 'k8s-policy.yaml')], { cwd: dir, env })).stdout).toContain('valid');
  });

  it('the systemd units verify with the installed command (systemd-analyze verify)', async () => {
    const units = join(dir, 'units');
    await mkdir(units);
    const names = await readdir(join(ROOT, 'deploy', 'systemd'));
    for (const n of names) await writeFile(join(units, n), (await readFile(join(ROOT, 'deploy', 'systemd', n), 'utf8')).replaceAll('/usr/local/bin/coffer', join(dir, 'bin', 'coffer')));
    const r = await run('systemd-analyze', ['verify', ...names.filter((n) => !n.includes('@.')).map((n) => join(units, n))], { cwd: units }).then(
      (o) => ({ ok: true, stderr: o.stderr }),
      (e: { stderr?: string }) => ({ ok: false, stderr: e.stderr ?? '' }),
    );
    expect(r, r.stderr).toEqual({ ok: true, stderr: '' });
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
