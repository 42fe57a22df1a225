/** `coffer policy check` and `coffer policy schema`: the backup policy file, validated without running anything. */
import { type CliContext } from '../context.js';

const DEFAULT_POLICY = 'config/backup-policy.yaml';

/** The policy file a command uses: --policy, else COFFER_POLICY, else the project's example. */
export function policyPath(o: { policy?: string }, env: NodeJS.ProcessEnv): string {
  return o.policy ?? env.COFFER_POLICY ?? DEFAULT_POLICY;
}

export const POLICY_OPTION = ['--policy <file>', `the policy file (default: COFFER_POLICY, else ${DEFAULT_POLICY})`] as const;

export function register(ctx: CliContext): void {
  const { program, io, say } = ctx;
  const policy = program.command('policy').description('the backup policy file (schedules, retention, verification, alerts)');
  policy
    .command('check')
    .description('validate a policy file: every problem with its line, column and key; on success, when each job runs next')
    .option(...POLICY_OPTION)
    .option('--json', 'print the validated policy and next runs as JSON')
    .action(async (o: { policy?: string; json?: boolean }) => {
      const file = policyPath(o, io.env);
      const { loadPolicy, nextRuns } = await import('@coffer/agent');
      const p = await loadPolicy(file);
      const runs = nextRuns(p);
      if (o.json) return say(JSON.stringify({ file, policy: p, nextRuns: runs }, null, 2));
      say(`${file}: valid — ${Object.keys(p.clusters).length} cluster(s), ${Object.keys(p.repositories).length} repository(ies), ${p.schedules.length} job(s)`);
      for (const r of runs) say(`  ${r.job.padEnd(12)} ${r.about.padEnd(16)} ${r.cron.padEnd(16)} next ${r.next ? r.next.toISOString() : 'never'} (${r.timeZone})`);
    });
  policy
    .command('schema')
    .description("print the policy's JSON Schema (for editors; refinements such as cron syntax are checked by `policy check`)")
    .action(async () => {
      const { policyJsonSchema } = await import('@coffer/agent');
      say(JSON.stringify(policyJsonSchema(), null, 2));
    });
}
