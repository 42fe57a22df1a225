/** `coffer drill`: restore a backup into a sandbox, re-verify every restored file, clean up. */
import { rmSync } from 'node:fs';
import { CorruptObjectError } from '@coffer/engine';
import { type CliContext } from '../context.js';
import { humanBytes } from '../progress.js';

export function register(ctx: CliContext): void {
  const { program, openRepo, say } = ctx;
  program
    .command('drill <backup>')
    .description('restore a backup into a temporary sandbox, re-verify every restored file, and clean up')
    .option('--sandbox <dir>', 'parent directory for the sandbox')
    .option('--json', 'print the report as JSON')
    .action(async (selector: string, o: { sandbox?: string; json?: boolean }) => {
      const repo = await openRepo();
      const { drillRestore } = await import('@coffer/verify');
      // Stopped by a signal, the drill removes its sandbox before it goes (128 + the signal's number, as a shell reports it).
      let sandbox: string | undefined;
      const stop = (signal: NodeJS.Signals, status: number) => () => {
        if (sandbox) rmSync(sandbox, { recursive: true, force: true });
        process.stderr.write(`coffer: drill stopped by ${signal}; sandbox removed\n`);
        process.exit(status);
      };
      const handlers: [NodeJS.Signals, () => void][] = [['SIGINT', stop('SIGINT', 130)], ['SIGTERM', stop('SIGTERM', 143)], ['SIGHUP', stop('SIGHUP', 129)]];
      for (const [s, h] of handlers) process.once(s, h);
      let report;
      try {
        report = await drillRestore(repo, selector, { ...(o.sandbox ? { sandboxParent: o.sandbox } : {}), onSandbox: (dir) => (sandbox = dir) });
      } finally {
        for (const [s, h] of handlers) process.removeListener(s, h);
      }
      if (o.json) say(JSON.stringify(report, null, 2));
      else say(`drill ${report.ok ? 'passed' : 'FAILED'}: ${report.backup}: ${report.files} files, ${humanBytes(report.bytes)}, restore ${report.restoreSeconds.toFixed(2)} s, re-verify ${report.verifySeconds.toFixed(2)} s${report.mismatches.length ? `; mismatched: ${report.mismatches.join(', ')}` : ''}`);
      if (!report.ok) throw new CorruptObjectError(report.backup, `restored content differs from the manifest`, report.mismatches);
    });
}
