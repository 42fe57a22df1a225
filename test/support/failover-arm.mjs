// A stand-in guard for the watchdog test: starts a watchdog, arms it with a
// deadline `ttl` ms ahead every `ttl / 4` ms, and prints the watchdog's pid.
// The test then freezes this process (SIGSTOP) or kills it.
import { monotonicMs, Watchdog } from '@coffer/failover';

const [dataDir, ttl] = [process.argv[2], Number(process.argv[3])];
const watchdog = await Watchdog.start();
const arm = () => watchdog.arm(monotonicMs() + ttl, dataDir);
await arm();
setInterval(arm, ttl / 4);
process.stdout.write(`${watchdog.pid}\n`);
