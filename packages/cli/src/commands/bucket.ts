/** `coffer bucket setup`: the lifecycle rules and Object Lock settings a repository's S3 bucket needs, applied or checked. */
import { InvalidArgumentError } from '@coffer/engine';
import type { BucketSetupReport } from '@coffer/aws';
import { CommandExit, intOption, type CliContext } from '../context.js';
import { EXIT_BUCKET_NOT_SET_UP } from '../exit-codes.js';
import { openStore } from '../repo-options.js';

export function register(ctx: CliContext): void {
  const { program, io, globals, say } = ctx;
  const bucket = program.command('bucket').description("the S3 bucket around a repository (s3:// --repo only)");
  bucket
    .command('setup')
    .description(
      'apply the lifecycle rules a repository needs (expire noncurrent versions after the protection window, abort multipart uploads unfinished after a day) and take off a bucket default retention (Coffer locks object by object with --s3-object-lock); other rules stay',
    )
    .option('--noncurrent-days <days>', 'keep noncurrent versions this many days (default: the --s3-object-lock period plus one, else 30)', intOption('--noncurrent-days', 1, 36500))
    .option('--check', 'report what differs and exit 30 if anything does; change nothing')
    .option('--json', 'print the report as JSON')
    .action(async (o: { noncurrentDays?: number; check?: boolean; json?: boolean }) => {
      const store = await openStore(globals(), io.env);
      const { S3Store, setupBucket } = await import('@coffer/aws');
      if (!(store instanceof S3Store)) throw new InvalidArgumentError('--repo', `${store.properties.location} is not an S3 bucket: bucket setup is for s3:// repositories`);
      try {
        const report = await setupBucket(store, { ...(o.noncurrentDays !== undefined ? { noncurrentDays: o.noncurrentDays } : {}), ...(o.check ? { check: true } : {}) });
        if (o.json) say(JSON.stringify(report, null, 2));
        else for (const line of describeBucket(report, o.check ?? false)) say(line);
        if (o.check && !report.ok) throw new CommandExit(EXIT_BUCKET_NOT_SET_UP, `bucket ${report.bucket} is not set up for the repository: ${report.changes.length} change(s) needed (coffer bucket setup makes them)`);
      } finally {
        store.destroy();
      }
    });
}

export function describeBucket(r: BucketSetupReport, check: boolean): string[] {
  const lines = [
    `bucket ${r.bucket}${r.prefix ? ` (prefix ${r.prefix})` : ''}: versioning ${r.versioning}, Object Lock ${r.objectLock ? 'enabled' : 'off'}${r.defaultRetention ? `, default retention ${r.defaultRetention}` : ''}${r.noncurrentDays !== undefined ? `; noncurrent versions kept ${r.noncurrentDays} days` : ''}`,
  ];
  if (r.changes.length === 0) lines.push('already set up: nothing to change');
  for (const c of r.changes) lines.push(`${check ? 'needed' : 'done'}: ${c}`);
  return lines;
}
