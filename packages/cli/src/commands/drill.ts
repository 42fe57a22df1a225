/** `coffer drill`: restore a backup into a sandbox, re-verify every restored file, clean up. */
import { rmSync } from 'node:fs';
import { CorruptObjectError } from '@coffer/engine';
import { withSandboxCleanup, type CliContext } from '../context.js';
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
      const report = await withSandboxCleanup(
        'drill',
        (dir) => rmSync(dir, { recursive: true, force: true }),
        (onSandbox) => drillRestore(repo, selector, { ...(o.sandbox ? { sandboxParent: o.sandbox } : {}), onSandbox }),
      );
      if (o.json) say(JSON.stringify(report, null, 2));
      else say(`drill ${report.ok ? 'passed' : 'FAILED'}: ${report.backup}: ${report.files} files, ${humanBytes(report.bytes)}, restore ${report.restoreSeconds.toFixed(2)} s, re-verify ${report.verifySeconds.toFixed(2)} s${report.mismatches.length ? `; mismatched: ${report.mismatches.join(', ')}` : ''}`);
      if (!report.ok) throw new CorruptObjectError(report.backup, `restored content differs from the manifest`, report.mismatches);
    });
}
