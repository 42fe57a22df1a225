/**
 * A verification run for people: a terminal summary and a markdown report
 * (the file a nightly job keeps). `--json` prints the report object itself,
 * with every figure.
 */
import { humanBytes } from '@coffer/engine';
import type { VerifyRunReport } from './verify-run.js';
import type { PostgresVerifyReport } from './verify-postgres.js';

const s = (n: number) => `${n.toFixed(n < 10 ? 2 : 1)} s`;

function rate(b: PostgresVerifyReport): string {
  return b.restored.bytesPerSecond > 0 ? `${humanBytes(b.restored.bytesPerSecond)}/s` : '-';
}

export function renderVerifySummary(r: VerifyRunReport): string {
  const lines: string[] = [];
  const c = r.walChain;
  lines.push(`wal chain ${c.ok ? 'ok' : 'FAILED'}: stanza ${r.stanza}${c.newest ? `, newest ${c.newest} on timeline ${c.timeline}` : ', no WAL'}, ${c.segmentsRead} segment records read, ${c.gaps.length} gap(s)`);
  if (r.staleSandboxesRemoved.length > 0) lines.push(`removed ${r.staleSandboxesRemoved.length} sandbox(es) left by runs killed earlier: ${r.staleSandboxesRemoved.join(', ')}`);
  const d = r.readData;
  if (d) lines.push(`read-data ${d.problems.length === 0 ? 'ok' : 'FAILED'}: read ${d.read} of ${d.packs} packs, ${humanBytes(d.bytesRead)} of ${humanBytes(d.packBytes)} (${d.due} due, ${d.sampled} sampled), ${d.chunks} chunks proved, ${s(d.seconds)}`);
  for (const b of r.backups) {
    lines.push(`${b.ok ? 'passed' : 'FAILED'} ${b.label} (${b.server}, target: ${b.target}): measured RTO ${s(b.rtoSeconds)} for ${humanBytes(b.restored.bytes)} + ${humanBytes(b.wal.bytes)} of WAL`);
    lines.push(`  phases: ${b.phases.map((p) => `${p.name} ${s(p.seconds)}`).join(', ')}; restore ${rate(b)}`);
    if (b.recovered) lines.push(`  recovered to ${b.recovered.lsn} on timeline ${b.recovered.timeline}${b.recovered.lastCommit ? `, last commit ${b.recovered.lastCommit}` : ''}`);
    for (const k of b.checks) lines.push(`  ${k.ok ? 'ok  ' : 'FAIL'} ${k.name.padEnd(15)} ${s(k.seconds).padStart(8)}  ${k.summary}`);
  }
  if (r.failures.length > 0) {
    lines.push(`${r.failures.length} failure(s):`);
    for (const f of r.failures) lines.push(`  - ${f}`);
  }
  return lines.join('\n');
}

export function renderVerifyMarkdown(r: VerifyRunReport, at = new Date()): string {
  const out: string[] = [];
  out.push(`# Verification of stanza ${r.stanza}: ${r.ok ? 'passed' : 'FAILED'}`, '', `Run finished ${at.toISOString()}.`, '');
  const c = r.walChain;
  out.push('## WAL chain', '');
  out.push(`${c.ok ? 'Complete' : 'Not complete'}: ${c.newest ? `newest segment ${c.newest} on timeline ${c.timeline}` : 'no WAL archived'}; ${c.segmentsRead} segment records read and authenticated.`, '');
  if (c.backups.length > 0) {
    out.push('| backup | timeline | state | recovery reaches |', '|:--|--:|:--|:--|');
    for (const b of c.backups) out.push(`| ${b.label} | ${b.timeline} | ${b.state} | ${b.reachesTo ?? '-'} |`);
    out.push('');
  }
  for (const g of c.gaps) out.push(`- missing ${g.from}…${g.to} (${g.segments} segments)`);
  for (const p of c.problems) out.push(`- ${p}`);
  const d = r.readData;
  if (d) {
    out.push('', '## Packs read', '');
    out.push(`Read ${d.read} of ${d.packs} packs whole: ${humanBytes(d.bytesRead)} of ${humanBytes(d.packBytes)} (${d.packBytes > 0 ? ((100 * d.bytesRead) / d.packBytes).toFixed(1) : '0'}%) — ${d.due} due (never proved, or not for a while), ${d.sampled} sampled; ${d.chunks} chunks decrypted and checked in ${s(d.seconds)}.`);
    for (const p of d.problems) out.push(`- ${p}`);
  }
  for (const b of r.backups) {
    out.push('', `## ${b.label}: ${b.ok ? 'passed' : 'FAILED'}`, '');
    out.push(`Server ${b.server}; target: ${b.target}; restored ${b.restored.files} files, ${humanBytes(b.restored.bytes)} (${humanBytes(b.restored.bytesFetched)} fetched, ${rate(b)}); replayed ${b.wal.files} WAL files, ${humanBytes(b.wal.bytes)}.`);
    if (b.recovered) out.push(`Recovered to ${b.recovered.lsn} on timeline ${b.recovered.timeline}${b.recovered.lastCommit ? `; last replayed commit ${b.recovered.lastCommit}` : ''}.`);
    out.push('', `**Measured RTO: ${s(b.rtoSeconds)}** (plan + restore + start + replay).`, '');
    out.push('| phase | seconds |', '|:--|--:|');
    for (const p of b.phases) out.push(`| ${p.name} | ${p.seconds.toFixed(2)} |`);
    out.push('', '| check | result | seconds | what |', '|:--|:--|--:|:--|');
    for (const k of b.checks) out.push(`| ${k.name} | ${k.ok ? 'pass' : '**fail**'} | ${k.seconds.toFixed(2)} | ${k.summary.replace(/\|/g, '\\|')} |`);
    if (b.failures.length > 0) {
      out.push('');
      for (const f of b.failures) out.push(`- ${f}`);
    }
  }
  if (r.failures.length > 0) {
    out.push('', '## Failures', '');
    for (const f of r.failures) out.push(`- ${f}`);
  }
  return out.join('\n') + '\n';
}
