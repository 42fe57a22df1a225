/**
 * A drill's phases as an SVG timeline: one bar per phase on a shared time
 * axis, failed phases in red, the measured recovery time and its target
 * beside it. People read a chart of where the minutes went faster than a
 * table. Plain SVG, no scripts or external references: it renders anywhere
 * a markdown report is shown.
 */
import type { RecoveryDrillReport } from './drill-report.js';

const WIDTH = 760;
const LABEL = 150;
const ROW = 22;
const TOP = 46;

const escape = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
const secs = (n: number) => `${n.toFixed(n < 10 ? 2 : 1)} s`;

export function renderDrillTimeline(r: Pick<RecoveryDrillReport, 'kind' | 'subject' | 'ok' | 'phases' | 'rto' | 'rpo'>): string {
  const end = Math.max(1e-3, ...r.phases.map((p) => p.startSeconds + p.seconds));
  const span = WIDTH - LABEL - 70;
  const x = (t: number) => LABEL + (t / end) * span;
  const height = TOP + r.phases.length * ROW + 46;
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${height}" viewBox="0 0 ${WIDTH} ${height}" font-family="sans-serif" font-size="12">`,
    `<rect width="${WIDTH}" height="${height}" fill="#ffffff"/>`,
    `<text x="10" y="20" font-size="14" font-weight="bold">${escape(`${r.kind} drill of ${r.subject}: ${r.ok ? 'passed' : 'FAILED'}`)}</text>`,
  ];
  const targets = [r.rto ? `RTO ${secs(r.rto.seconds)} of ${secs(r.rto.target)} (${r.rto.met ? 'met' : 'missed'})` : '', r.rpo?.seconds !== undefined ? `RPO ${secs(r.rpo.seconds)} of ${secs(r.rpo.target)} (${r.rpo.met ? 'met' : 'missed'})` : r.rpo ? `RPO ${r.rpo.commits ?? 0} commits lost (${r.rpo.met ? 'met' : 'missed'})` : ''].filter(Boolean);
  out.push(`<text x="10" y="36" fill="#444">${escape(targets.join(' · '))}</text>`);
  r.phases.forEach((p, i) => {
    const y = TOP + i * ROW;
    const w = Math.max(1, x(p.startSeconds + p.seconds) - x(p.startSeconds));
    out.push(
      `<text x="${LABEL - 8}" y="${y + 14}" text-anchor="end">${escape(p.name)}</text>`,
      `<rect x="${x(p.startSeconds).toFixed(1)}" y="${y + 3}" width="${w.toFixed(1)}" height="${ROW - 8}" fill="${p.ok ? '#4a7fb5' : '#c0392b'}"><title>${escape(`${p.name}: ${secs(p.seconds)}${p.detail ? ` — ${p.detail}` : ''}`)}</title></rect>`,
      `<text x="${(x(p.startSeconds) + w + 4).toFixed(1)}" y="${y + 14}" fill="#444">${secs(p.seconds)}</text>`,
    );
  });
  const axis = TOP + r.phases.length * ROW + 8;
  out.push(`<line x1="${LABEL}" y1="${axis}" x2="${LABEL + span}" y2="${axis}" stroke="#888"/>`);
  for (let k = 0; k <= 4; k++) {
    const t = (end * k) / 4;
    out.push(`<line x1="${x(t).toFixed(1)}" y1="${axis}" x2="${x(t).toFixed(1)}" y2="${axis + 4}" stroke="#888"/>`, `<text x="${x(t).toFixed(1)}" y="${axis + 16}" text-anchor="middle" fill="#444">${secs(t)}</text>`);
  }
  out.push('</svg>', '');
  return out.join('\n');
}
