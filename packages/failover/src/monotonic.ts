/**
 * Milliseconds of CLOCK_MONOTONIC, the same clock in every process on a host
 * (`performance.now()` counts from each process's own start): the guard
 * hands its lease's deadline to the watchdog process in it.
 */
export function monotonicMs(): number {
  return Number(process.hrtime.bigint() / 1000n) / 1000;
}
