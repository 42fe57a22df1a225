/**
 * Garbage collection and check read index objects and manifests of many
 * megabytes one after another (check once per pass). glibc's malloc raises
 * its mmap threshold each time such a buffer is freed, so the next ones come
 * from its heap, which it keeps: the process ends up holding some 100 MB it
 * no longer uses (the benchmark's 50-million-chunk repository: gc 346 MB peak
 * RSS with the default, about 250 MB with the threshold fixed; check with its
 * 64 MiB table 350 MB, and about 240 MB fixed). The threshold is read once,
 * when the process starts; so `coffer gc` and `coffer check` run themselves
 * once more with it set, and that run ends when this one does, however this
 * one ends.
 *
 * That run also caps V8's young generation at 1 MiB semi-spaces (Node's
 * default lets them grow to 16 MiB and more). These commands allocate few JS
 * objects but many large buffers, each freed only when a collection finds
 * its wrapper dead: a small young generation is collected often, so it
 * holds less and the dead buffers go sooner. Measured at 50 million chunks,
 * three runs each: gc 246–254 MiB peak RSS before, 223–228 with it.
 */
import { spawn } from 'node:child_process';

const TUNED = 'MALLOC_MMAP_THRESHOLD_';
/** Buffers from 128 KiB up are mapped and unmapped on their own (glibc's own starting threshold, kept fixed). */
const THRESHOLD = String(128 * 1024);
const CHILD_MARK = 'COFFER_MALLOC_TUNED';
const V8_FLAGS = ['--max-semi-space-size=1'];
const COMMANDS = new Set(['gc', 'check']);

/** The command word of an argv: the first argument that is neither an option nor the value of one of `valued`. */
function commandOf(argv: readonly string[], valued: ReadonlySet<string>): string | undefined {
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (valued.has(a)) i++;
    else if (!a.startsWith('-')) return a;
  }
  return undefined;
}

/**
 * When `argv` runs a memory-bound command on Linux with the threshold unset,
 * runs this program again with it set and resolves to that run's exit
 * status (a run ended by a signal ends this one by the same signal);
 * otherwise undefined, and the caller goes on itself.
 */
export function runTuned(argv: readonly string[], env: NodeJS.ProcessEnv, valued: ReadonlySet<string>): Promise<number> | undefined {
  if (env[CHILD_MARK] !== undefined) {
    watchParent();
    return undefined;
  }
  if (process.platform !== 'linux' || env[TUNED] !== undefined || !COMMANDS.has(commandOf(argv, valued) ?? '')) return undefined;
  const child = spawn(process.execPath, [...process.execArgv, ...V8_FLAGS, process.argv[1]!, ...argv], {
    stdio: 'inherit',
    env: { ...env, [TUNED]: THRESHOLD, [CHILD_MARK]: String(process.pid) },
  });
  const forward = (signal: NodeJS.Signals) => () => child.kill(signal);
  const handlers = (['SIGINT', 'SIGTERM', 'SIGHUP'] as const).map((s) => [s, forward(s)] as const);
  for (const [s, h] of handlers) process.on(s, h);
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      for (const [s, h] of handlers) process.off(s, h);
      if (signal) process.kill(process.pid, signal);
      resolve(code ?? 1);
    });
  });
}

/** In the tuned run: if the run that started it is gone (killed outright), stop too, as it would have. */
function watchParent(): void {
  const parent = process.ppid;
  setInterval(() => {
    if (process.ppid !== parent) process.kill(process.pid, 'SIGKILL');
  }, 200).unref();
}
