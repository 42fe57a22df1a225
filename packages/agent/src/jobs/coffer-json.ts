/**
 * One `coffer` child that prints JSON — a look, not a job (no run record, no
 * retries): its stdout parsed, or an error with the last line it wrote to
 * stderr (never a secret: commands print none).
 */
import { execFile } from 'node:child_process';

/** `what` names the command in errors, e.g. `coffer wal-end`. */
export function cofferJson(what: string, cofferBin: string, args: readonly string[], env: NodeJS.ProcessEnv, timeoutMs = 60_000): Promise<unknown> {
  return new Promise((resolve, reject) => {
    execFile(process.execPath, [cofferBin, ...args], { env, timeout: timeoutMs, maxBuffer: 4 << 20 }, (e, stdout, stderr) => {
      if (e) return reject(new Error(`${what}: ${String(stderr).trim().split('\n').at(-1) || e.message}`));
      try {
        resolve(JSON.parse(stdout) as unknown);
      } catch {
        reject(new Error(`${what} printed no JSON`));
      }
    });
  });
}
