/** `coffer mirror`: copy what another store lacks, each object checked against its SHA-256. */
import { CONFIG_KEY, InvalidArgumentError, mirror, mirrorBackups, mirrorLag, reencryptInitOptions, reencryptRepository, Repository, type MirrorLag, type MirrorReport, type ReencryptReport } from '@coffer/engine';
import { intOption, leaseOptions, listOption, type CliContext } from '../context.js';
import { humanBytes } from '../progress.js';
import { absoluteLocation, destinationAccess, destinationKeyProviders, openStore, storeAt } from '../repo-options.js';

export function register(ctx: CliContext): void {
  const { program, io, globals, openRepo, say, report: figures } = ctx;
  program
    .command('mirror')
    .description('copy every object the destination lacks (packs, indexes, key records, manifests, WAL, config), each checked against its SHA-256; resumable')
    .requiredOption('--to <path|url>', 'destination repository: a path, file:// URL or s3://bucket/prefix')
    .option('--concurrency <n>', 'objects in flight', intOption('--concurrency', 1, 256))
    .option('--backup <backup>', 'copy only what these backups need (id, label or tag; repeatable): e.g. the cold tier into a colder bucket, which then restores them on its own (needs the keys)', listOption('--backup', 'name'), [] as string[])
    .option('--to-pack-storage-class <class>', 'S3 storage class of the packs written to the destination (an instant-retrieval one: STANDARD_IA, ONEZONE_IA, GLACIER_IR, INTELLIGENT_TIERING…)')
    .option('--to-s3-endpoint <url>', "the destination's S3-compatible endpoint, when it is not the source's (env COFFER_TO_AWS_ENDPOINT_URL_S3); its region and credentials: COFFER_TO_AWS_REGION, COFFER_TO_AWS_ACCESS_KEY_ID, COFFER_TO_AWS_SECRET_ACCESS_KEY, COFFER_TO_AWS_SESSION_TOKEN (default: the source's)")
    .option('--dry-run', 'copy nothing: say how far the destination is behind (objects and bytes it lacks, the age of the oldest); lists both stores, needs no keys and no write access')
    .option('--reencrypt', 'copy into a repository with keys of its own (a leaked data key or chunk-id key): every chunk opened, checked, given a new id and sealed under the new keys; backups, WAL, stanzas and keep marks carried; an empty destination is made with the source\'s chunking settings; resumable')
    .option('--to-key-file <file>', 'with --reencrypt: the key file of the new repository (env COFFER_TO_KEY_FILE); or COFFER_TO_PASSPHRASE, or --to-kms-key-id')
    .option('--to-kms-key-id <id>', 'with --reencrypt: the KMS key that wraps the new repository\'s data key (env COFFER_TO_KMS_KEY_ID; its endpoint COFFER_TO_AWS_ENDPOINT_URL_KMS)')
    .option('--json', 'print the report as JSON')
    .action(async (o: { to: string; concurrency?: number; backup: string[]; toPackStorageClass?: string; toS3Endpoint?: string; dryRun?: boolean; reencrypt?: boolean; toKeyFile?: string; toKmsKeyId?: string; json?: boolean }) => {
      const dest = destinationAccess(globals(), io.env, o.toS3Endpoint);
      const to = await storeAt(absoluteLocation(o.to), { ...dest.options, ...(o.toPackStorageClass ? { s3PackStorageClass: o.toPackStorageClass } : {}) }, dest.env);
      if (!o.reencrypt && (o.toKeyFile || o.toKmsKeyId)) throw new InvalidArgumentError(o.toKeyFile ? '--to-key-file' : '--to-kms-key-id', 'gives the keys of a re-encrypted copy: it goes with --reencrypt (a plain mirror is the same repository, with the same keys)');
      if (o.reencrypt) {
        if (o.backup.length > 0 || o.dryRun) throw new InvalidArgumentError('--reencrypt', 'copies the whole repository; it does not combine with --backup or --dry-run');
        const from = await openRepo();
        const warn = (line: string) => io.stderr.write(`coffer: warning: ${line}\n`);
        const fresh = !(await to.head(CONFIG_KEY));
        const providers = await destinationKeyProviders(o.toKeyFile, o.toKmsKeyId, dest.env, fresh, warn);
        const copy = fresh ? await Repository.init(to, providers, reencryptInitOptions(from.config)) : await Repository.open(to, providers, { onWarning: warn });
        const t0 = performance.now();
        const r = await reencryptRepository(from, copy, { ...(o.concurrency ? { concurrency: o.concurrency } : {}), ...leaseOptions(globals(), io.env), onProgress: (m) => io.stderr.write(`coffer: ${m}\n`) });
        const seconds = (performance.now() - t0) / 1000;
        // Told in the copy's audit trail: the copy is the repository from now on; the source is to be retired.
        ctx.adopt(copy);
        ctx.audit({ from: from.location, to: copy.location, reencrypt: true, repositoryId: copy.config.repositoryId, backups: r.backupsCopied, walFiles: r.walFiles });
        figures({ reencrypt_backups: r.backupsCopied, reencrypt_chunks_written: r.chunksWritten, reencrypt_wal_files: r.walFiles, reencrypt_stored_bytes: r.storedBytes });
        if (o.json) say(JSON.stringify({ ...r, repositoryId: copy.config.repositoryId, created: fresh, seconds }, null, 2));
        else printReencrypt(r, from.location, copy, fresh, seconds, say);
        return;
      }
      if (o.dryRun) {
        if (o.backup.length > 0) throw new InvalidArgumentError('--dry-run', 'measures what the whole repository lacks at the destination; it does not combine with --backup');
        const from = await openStore(globals(), io.env);
        const lag = await mirrorLag(from, to);
        // Names the destination for the metrics (their `target`); no audit record follows: no repository was opened.
        ctx.audit({ from: from.properties.location, to: absoluteLocation(o.to), dryRun: true });
        const lagSeconds = lag.oldestMissing ? Math.max(0, (Date.now() - lag.oldestMissing.getTime()) / 1000) : 0;
        figures({ mirror_missing_objects: lag.missingObjects, mirror_missing_bytes: lag.missingBytes, mirror_lag_seconds: lagSeconds, mirror_conflicts: lag.conflicts });
        if (o.json) say(JSON.stringify({ ...lag, lagSeconds }, null, 2));
        else printLag(lag, lagSeconds, from.properties.location, to.properties.location, say);
        return;
      }
      const t0 = performance.now();
      const common = { ...(o.concurrency ? { concurrency: o.concurrency } : {}), ...leaseOptions(globals(), io.env) };
      let source: string;
      let report: MirrorReport;
      if (o.backup.length > 0) {
        const repo = await openRepo();
        source = repo.location;
        report = await mirrorBackups(repo, to, o.backup, common);
      } else {
        const from = await openStore(globals(), io.env);
        source = from.properties.location;
        report = await mirror(from, to, common);
      }
      const seconds = (performance.now() - t0) / 1000;
      // Told in the destination's audit trail (what this run wrote), where it has the keys to write it; the source
      // is left as it was, so a second run finds nothing to copy.
      const written = await ctx.openRepoAt(to).catch(() => undefined);
      if (written) ctx.adopt(written);
      ctx.audit({ from: source, to: absoluteLocation(o.to), ...(o.backup.length ? { backups: o.backup } : {}) });
      figures({ mirror_copied_objects: report.copied, mirror_copied_bytes: report.bytesCopied, mirror_problems: report.problems.length });
      if (o.json) say(JSON.stringify({ ...report, seconds, problems: report.problems.map((p) => ({ code: p.code, message: p.message })) }, null, 2));
      else printMirror(report, source, to.properties.location, seconds, say);
      if (!report.ok) throw report.problems[0]!;
    });
}


function printMirror(r: MirrorReport, from: string, to: string, seconds: number, say: (s: string) => void): void {
  const parts = Object.entries(r.copiedByPrefix).map(([p, n]) => `${n} ${p.replace(/\/$/, '')}`);
  say(`mirrored ${from} → ${to}: copied ${r.copied} objects (${humanBytes(r.bytesCopied)})${parts.length ? ` [${parts.join(', ')}]` : ''}, ${r.present} already there, in ${seconds.toFixed(2)} s`);
  for (const p of r.problems) say(`  ${p.code}: ${p.message}`);
}

function printReencrypt(r: ReencryptReport, from: string, copy: Repository, fresh: boolean, seconds: number, say: (s: string) => void): void {
  say(`re-encrypted ${from} → ${copy.location}${fresh ? ` (new repository ${copy.config.repositoryId})` : ` (repository ${copy.config.repositoryId})`}: ${r.backupsCopied} backup(s) copied, ${r.backups.length - r.backupsCopied} already there; ${r.walFiles} WAL file(s) copied, ${r.walPresent} already there; ${r.chunksWritten} of ${r.chunksRead} chunk(s) written (${humanBytes(r.storedBytes)} stored) in ${seconds.toFixed(2)} s`);
  for (const b of r.backups) say(`  ${b.label}: ${b.from.slice(b.from.lastIndexOf('-') + 1, b.from.lastIndexOf('-') + 13)} → ${b.to.slice(b.to.lastIndexOf('-') + 1, b.to.lastIndexOf('-') + 13)}${b.copied ? '' : ' (already there)'}`);
}

function printLag(lag: MirrorLag, lagSeconds: number, from: string, to: string, say: (s: string) => void): void {
  if (lag.missingObjects === 0) say(`${to} holds everything ${from} holds`);
  else {
    const parts = Object.entries(lag.missingByPrefix).map(([p, n]) => `${n.objects} ${p.replace(/\/$/, '')}`);
    say(`${to} lacks ${lag.missingObjects} objects (${humanBytes(lag.missingBytes)}) of ${from} [${parts.join(', ')}]${lag.oldestMissing ? `; the oldest was written ${lagSeconds.toFixed(0)} s ago` : ''}`);
  }
  if (lag.conflicts > 0) say(`  ${lag.conflicts} objects are held there with other sizes (a mirror run reports them)`);
}
