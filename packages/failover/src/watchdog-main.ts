/**
 * The watchdog process (forked by the guard). The guard arms it with a
 * deadline — the moment its lease stops holding, on the host's monotonic
 * clock — every time the lease is renewed. If the deadline passes without a
 * later one (the guard frozen by SIGSTOP, starved, stuck on a hung request,
 * or dead), the watchdog fences the server itself. It does nothing else, so
 * nothing delays it: the fence is synchronous, from a timer of an otherwise
 * idle process.
 */
import { fenceServer } from './fence.js';
import { monotonicMs } from './monotonic.js';
import type { WatchdogMessage, WatchdogReport } from './watchdog.js';

let timer: NodeJS.Timeout | undefined;
let armed: { deadline: number; dataDir: string } | undefined;

function report(message: WatchdogReport): void {
  if (process.connected) process.send?.(message);
}

function fire(reason: string): void {
  if (!armed) return;
  const { dataDir } = armed;
  armed = undefined;
  const fenced = fenceServer(dataDir);
  report({ type: 'fenced', reason, report: fenced });
  if (!process.connected) process.exit(0);
}

function schedule(): void {
  if (timer) clearTimeout(timer);
  timer = undefined;
  if (!armed) return;
  const wait = armed.deadline - monotonicMs();
  if (wait <= 0) fire('the lease deadline passed with no renewal');
  else timer = setTimeout(() => schedule(), Math.min(wait, 2 ** 30));
}

process.on('message', (message: WatchdogMessage) => {
  if (message.type === 'arm') {
    armed = { deadline: message.deadline, dataDir: message.dataDir };
    schedule();
  } else if (message.type === 'disarm') {
    armed = undefined;
    schedule();
  } else if (message.type === 'fence') {
    armed = { deadline: 0, dataDir: message.dataDir };
    fire(message.reason);
  }
  report({ type: 'ack', seq: message.seq });
});

// The guard is gone: an armed watchdog still fences at the deadline (no one will renew), then exits.
process.on('disconnect', () => {
  if (!armed) process.exit(0);
});
// Only the fence ends it while armed: the signals a service manager sends first are not enough.
process.on('SIGTERM', () => {
  if (!armed) process.exit(0);
});
report({ type: 'ready', pid: process.pid });
