/** `coffer agent`: run a policy's jobs on their schedules, watch the WAL archive, serve metrics; until SIGTERM. */
import { COFFER_BIN, type CliContext } from '../context.js';
import { policyPath, POLICY_OPTION } from './policy.js';

export function register(ctx: CliContext): void {
  const { program, io } = ctx;
  program
    .command('agent')
    .description("run the policy's jobs on their schedules (each a coffer child process, one at a time per repository, missed and interrupted runs caught up, failures retried), watch each cluster's WAL archive (RPO, archive lag, replicas), and serve /metrics, /healthz, /readyz and /status on metrics.listen; SIGTERM or SIGINT: take no new work, end running jobs, exit")
    .option(...POLICY_OPTION)
    .action(async (o: { policy?: string }) => {
      const { Agent, createLogger, loadPolicy } = await import('@coffer/agent');
      const file = policyPath(o, io.env);
      const policy = await loadPolicy(file);
      const agent = new Agent({ policy, policyFile: file, cofferBin: COFFER_BIN, env: io.env, logger: createLogger({ ...policy.logs, destination: io.stdout }) });
      let stopped!: () => void;
      const done = new Promise<void>((resolve) => (stopped = resolve));
      const stop = (signal: NodeJS.Signals) => () => void agent.stop(signal).then(stopped, stopped);
      const handlers: [NodeJS.Signals, () => void][] = [['SIGTERM', stop('SIGTERM')], ['SIGINT', stop('SIGINT')]];
      for (const [s, h] of handlers) process.on(s, h);
      try {
        await agent.start();
        await done;
      } finally {
        for (const [s, h] of handlers) process.removeListener(s, h);
      }
    });
}
