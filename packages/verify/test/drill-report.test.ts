/**
 * Drill reports: a verification run measured against the RPO and RTO
 * targets (met, missed, margin), the recovery time projected to another size
 * from the rates measured, and the report written as JSON, markdown and an
 * SVG timeline.
 */
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { projectRto, renderDrillTimeline, verifyDrillReport, writeDrillReport, type PostgresVerifyReport, type VerifyRunReport } from '../src/index.js';

const started = new Date('2026-12-01T05:00:00.000Z');
const finished = new Date('2026-12-01T05:01:40.000Z');

function backup(over: Partial<PostgresVerifyReport> = {}): PostgresVerifyReport {
  return {
    ok: true,
    backup: 'backups/main/20261201T010000Z-abc',
    label: '20261201T010000Z',
    stanza: 'main',
    server: 'PostgreSQL 15.8',
    target: 'end of archive',
    sandbox: '/tmp/coffer-verify-x',
    phases: [
      { name: 'plan', seconds: 0.5 },
      { name: 'restore', seconds: 20 },
      { name: 'start', seconds: 2 },
      { name: 'replay', seconds: 10 },
      { name: 'checks', seconds: 30 },
      { name: 'stop', seconds: 1 },
    ],
    rtoSeconds: 32.5,
    restored: { files: 1000, bytes: 2e9, bytesFetched: 1e9, bytesPerSecond: 1e8 },
    wal: { files: 10, bytes: 160e6 },
    recovered: { lsn: '0/A000000', lastCommit: '2026-12-01T04:58:20.000Z', timeline: 1 },
    checks: [{ name: 'amcheck', ok: true, seconds: 20, summary: '12 relations checked', failures: [] }],
    failures: [],
    ...over,
  };
}

function run(over: Partial<VerifyRunReport> = {}, b: PostgresVerifyReport = backup()): VerifyRunReport {
  return {
    ok: true,
    stanza: 'main',
    walChain: { ok: true, stanza: 'main', newest: '00000001000000000000000A', timeline: 1, segmentsRead: 10, gaps: [], problems: [], backups: [] } as unknown as VerifyRunReport['walChain'],
    backups: [b],
    failures: [],
    staleSandboxesRemoved: [],
    ...over,
  };
}

describe('verify drill report', () => {
  it('measures the recovery time and the data at risk against the targets, with the margins', () => {
    const r = verifyDrillReport(run(), started, finished, [5]);
    expect(r.ok).toBe(true);
    expect(r.id).toBe('20261201T050000Z-verify-main');
    expect(r.rto).toMatchObject({ seconds: 32.5, target: 1800, met: true, marginSeconds: 1767.5 });
    // The newest commit recovered was 100 s old when the drill began.
    expect(r.rpo).toMatchObject({ seconds: 100, target: 900, met: true, marginSeconds: 800 });
    expect(r.phases.map((p) => p.name)).toEqual(['WAL chain', '20261201T010000Z: plan', '20261201T010000Z: restore', '20261201T010000Z: start', '20261201T010000Z: replay', '20261201T010000Z: checks', '20261201T010000Z: stop']);
    // Phases follow each other from when the backup's verification began.
    expect(r.phases[1]!.startSeconds).toBe(5);
    expect(r.phases[2]!.startSeconds).toBe(5.5);
    expect(r.phases[0]).toMatchObject({ startSeconds: 0, seconds: 5 });
    expect(r.postMortem.summary).toContain('passed');
    expect(r.postMortem.timeline).toHaveLength(r.phases.length);
  });

  it('fails on a missed target, naming it, as on what verification found', () => {
    const slow = verifyDrillReport(run(), started, finished, [5], { targets: { rpoSeconds: 60, rtoSeconds: 30 } });
    expect(slow.ok).toBe(false);
    expect(slow.findings).toEqual([expect.stringMatching(/^RTO: recovering 20261201T010000Z took 32\.5 s, over the 30 s target/), expect.stringMatching(/^RPO: the newest commit the archive recovers is 100 s older than the drill, over the 60 s target/)]);
    expect(slow.postMortem.improve.some((i) => i.startsWith('Fix: RTO'))).toBe(true);
    const gap = 'wal-chain: 000000010000000000000003…000000010000000000000003 (1 segment) missing';
    const broken = verifyDrillReport(run({ ok: false, failures: [gap] }), started, finished, [5]);
    expect(broken.ok).toBe(false);
    expect(broken.findings).toEqual([gap]);
    expect(broken.postMortem.improve[0]).toBe(`Fix: ${gap}`);
  });

  it('aimed at a point in time, says nothing about data at risk', () => {
    const r = verifyDrillReport(run(), started, finished, [5], { target: { time: '2026-11-30 12:00:00+00' } });
    expect(r.rpo).toBeUndefined();
  });

  it('projects the recovery time to production size from the rates measured', () => {
    const r = verifyDrillReport(run(), started, finished, [5], { projectTo: { bytes: 2e12, walBytes: 1.6e9 } });
    // 2 GB restored in 20 s, 160 MB replayed in 10 s: 2 TB takes 20,000 s, 1.6 GB 100 s, plus plan and start.
    expect(r.rto!.projected).toMatchObject({ bytes: 2e12, walBytes: 1.6e9, restoreBytesPerSecond: 1e8, replayBytesPerSecond: 16e6, met: false });
    expect(r.rto!.projected!.seconds).toBeCloseTo(0.5 + 2 + 20_000 + 100, 6);
    expect(r.ok).toBe(false);
    expect(r.findings).toEqual([expect.stringMatching(/^RTO: at 2000\.0 GB recovery would take about 20103 s/)]);
  });

  it('projection: linear in the bytes, the fixed part kept, the measured size giving back the measured time', () => {
    fc.assert(
      fc.property(fc.double({ min: 0, max: 100, noNaN: true }), fc.double({ min: 1, max: 1e10, noNaN: true }), fc.double({ min: 0.01, max: 1e4, noNaN: true }), fc.double({ min: 1, max: 1e10, noNaN: true }), fc.double({ min: 0.01, max: 1e4, noNaN: true }), fc.double({ min: 0, max: 1e13, noNaN: true }), (fixed, rb, rs, wb, ws, to) => {
        const m = { fixedSeconds: fixed, restoreBytes: rb, restoreSeconds: rs, replayBytes: wb, replaySeconds: ws };
        const same = projectRto(m, { bytes: rb, walBytes: wb });
        expect(same.seconds).toBeCloseTo(fixed + rs + ws, 6);
        const a = projectRto(m, { bytes: to, walBytes: 0 });
        const b = projectRto(m, { bytes: 2 * to, walBytes: 0 });
        expect(b.seconds - fixed).toBeCloseTo(2 * (a.seconds - fixed), 3);
      }),
    );
  });

  it('writes JSON, markdown and an SVG timeline; names are escaped in the SVG', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'coffer-drill-report-'));
    try {
      const r = verifyDrillReport(run({}, backup({ label: 'a<b>&"c"' })), started, finished, [5]);
      const paths = await writeDrillReport(join(dir, 'drills'), r);
      expect((await readdir(join(dir, 'drills'))).sort()).toEqual([`${r.id}.json`, `${r.id}.md`, `${r.id}.svg`]);
      expect(JSON.parse(await readFile(paths.json, 'utf8'))).toEqual(r);
      const md = await readFile(paths.markdown, 'utf8');
      for (const heading of ['## Targets', '## Phases', '## Checks', '## Post-mortem']) expect(md).toContain(heading);
      expect(md).toContain(`![phases](${r.id}.svg)`);
      const svg = await readFile(paths.svg, 'utf8');
      expect(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg"')).toBe(true);
      // A bar per phase, besides the background.
      expect(svg.match(/<rect /g)).toHaveLength(r.phases.length + 1);
      expect(svg).toContain('a&lt;b&gt;&amp;&quot;c&quot;: restore');
      expect(svg).not.toContain('a<b>');
      expect(renderDrillTimeline({ ...r, ok: false, phases: [{ name: 'x', startSeconds: 0, seconds: 1, ok: false }] })).toContain('#c0392b');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
