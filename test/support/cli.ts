/** Runs the real `coffer` binary as a child process. */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export const COFFER_BIN = fileURLToPath(new URL('../../packages/cli/bin/coffer.js', import.meta.url));
/** The installed command (a shell script that confirms archive_command's calls itself, else runs COFFER_BIN with COFFER_NODE). */
export const COFFER_COMMAND = fileURLToPath(new URL('../../packages/cli/bin/coffer', import.meta.url));

export interface RunResult {
  status: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export function startCoffer(args: string[], env: Record<string, string | undefined> = {}, options: { cwd?: string; as?: { uid: number; gid: number } } = {}): { child: ChildProcess; done: Promise<RunResult> } {
  const child = spawn(process.execPath, [COFFER_BIN, ...args], {
    ...(options.cwd ? { cwd: options.cwd } : {}),
    ...(options.as ? { uid: options.as.uid, gid: options.as.gid } : {}),
    env: { ...process.env, COFFER_PASSPHRASE: undefined, COFFER_REPO: undefined, COFFER_KEY_FILE: undefined, COFFER_STANZA: undefined, COFFER_REPOSITORY_ID: undefined, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const done = new Promise<RunResult>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (status, signal) => resolve({ status, signal, stdout, stderr }));
  });
  return { child, done };
}

export function coffer(args: string[], env: Record<string, string | undefined> = {}, options: { cwd?: string } = {}): Promise<RunResult> {
  return startCoffer(args, env, options).done;
}
