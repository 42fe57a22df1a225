/** `coffer mirror`: copy what another store lacks, each object checked against its SHA-256. */
import { mirror, type MirrorReport } from '@coffer/engine';
import { intOption, type CliContext } from '../context.js';
import { humanBytes } from '../progress.js';
import { absoluteLocation, openStore, storeAt } from '../repo-options.js';

export function register(ctx: CliContext): void {
  const { program, io, globals, say } = ctx;
  program
    .command('mirror')
    .description('copy every object the destination lacks (packs, indexes, key records, manifests, WAL, config), each checked against its SHA-256; resumable')
    .requiredOption('--to <path|url>', 'destination repository: a path, file:// URL or s3://bucket/prefix')
    .option('--concurrency <n>', 'objects in flight', intOption('--concurrency', 1, 256))
    .option('--json', 'print the report as JSON')
    .action(async (o: { to: string; concurrency?: number; json?: boolean }) => {
      const from = await openStore(globals(), io.env);
      const to = await storeAt(absoluteLocation(o.to), globals(), io.env);
      const t0 = performance.now();
      const report = await mirror(from, to, o.concurrency ? { concurrency: o.concurrency } : {});
      const seconds = (performance.now() - t0) / 1000;
      if (o.json) say(JSON.stringify({ ...report, seconds, problems: report.problems.map((p) => ({ code: p.code, message: p.message })) }, null, 2));
      else printMirror(report, from.properties.location, to.properties.location, seconds, say);
      if (!report.ok) throw report.problems[0]!;
    });
}


function printMirror(r: MirrorReport, from: string, to: string, seconds: number, say: (s: string) => void): void {
  const parts = Object.entries(r.copiedByPrefix).map(([p, n]) => `${n} ${p.replace(/\/$/, '')}`);
  say(`mirrored ${from} → ${to}: copied ${r.copied} objects (${humanBytes(r.bytesCopied)})${parts.length ? ` [${parts.join(', ')}]` : ''}, ${r.present} already there, in ${seconds.toFixed(2)} s`);
  for (const p of r.problems) say(`  ${p.code}: ${p.message}`);
}

