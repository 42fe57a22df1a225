/**
 * The quarterly regional evacuation drill. Region A — its cluster, its
 * bucket, its KMS key — is made unavailable (the drill environment's own
 * command: kill the server, disable the key, close the bucket); region B
 * then takes over with what it holds alone: its standby is promoted, or,
 * when it has none, the newest backup in region B's repository is restored
 * with region B's key and recovered to the newest WAL that repository holds.
 * The server is started, checked, the cutover name moved to it, and a write
 * accepted there. A probe writer committed to region A until it was lost;
 * what it had acknowledged and region B does not hold is the data lost —
 * commits, seconds, WAL bytes — and lost-to-first-write is the recovery
 * time. Both go into the report against the targets.
 *
 * Afterwards the drill puts things back (unless asked to keep them): the
 * restored server stopped and removed, or the promoted standby rebuilt by
 * its command; the name pointed at region A again; region A brought back by
 * the environment's command.
 *
 * Region B's repository comes opened (its keys alone); the environment's
 * commands, the cutover and the standby's rebuild are the caller's.
 */
import { randomBytes } from 'node:crypto';
import { chown, mkdir, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { chooseBackup, conninfoSettings, isArchived, keywordValueString, longestStreamed, parseLsn, parseWalStreamName, restorePostgres, type Repository, type RestoreCommandScope } from '@coffer/engine';
import { findPostgresFor, runAsServerUser, serverUser, type PostgresInstall } from '../postgres-sandbox.js';
import { createProbeTable, DrillSteps, dropProbeRun, probeRows, ProbeWriter, query, sleep, StepFailed, type Ack, type ProbeNode } from './probe-writer.js';
import { DEFAULT_DRILL_TARGETS, finishReport, rpoAgainst, rtoAgainst, type DrillCheck, type DrillTargets, type RecoveryDrillReport } from './drill-report.js';

export type EvacuatePath =
  | {
      kind: 'restore';
      /** An absent or empty directory for the restored cluster. */
      dataDir: string;
      /** Where the restored server listens. */
      listen: string;
      port: number;
      /** Server binaries (default: those of the backup's major version on this machine). */
      install?: PostgresInstall;
      /** restore_command for the restored cluster: region B's repository, region B's keys. */
      restoreCommand: (scope: RestoreCommandScope) => string;
      /** The restored server's environment (what its restore_command needs to reach region B's repository). */
      serverEnv?: Record<string, string>;
    }
  | {
      kind: 'promote';
      /** Region B's standby of region A's primary. */
      standby: ProbeNode;
      /** Makes it a standby of region A's primary again once A is back (after the drill). */
      rebuild?: () => Promise<void>;
    };

export interface EvacuateDrillOptions {
  /** The cluster, for the report. */
  cluster: string;
  stanza: string;
  /** Region B's repository, opened with region B's keys alone. */
  repo: Repository;
  /** Region A's primary: the probe writer commits there until region A is lost. */
  primary: ProbeNode;
  /** Makes region A unavailable (the drill environment's command). */
  loseRegion: () => Promise<void>;
  /** Brings region A back after the drill. */
  restoreRegion?: () => Promise<void>;
  via: EvacuatePath;
  /** Moves the cutover name to region B's server (`to: 'b'`), and back after the drill (`to: 'a'`). */
  cutover?: (to: 'a' | 'b') => Promise<void>;
  /** What the cutover name resolves to now, and region B's address it must resolve to. */
  resolve?: () => Promise<string[]>;
  addressB?: string;
  /** Leave region B's server running and the name on it (a real evacuation, or to look around). */
  keep?: boolean;
  /**
   * How long the probe writer goes on once region B holds its first commits, before region A is lost
   * (default: a random 1–10 s, so that the loss falls anywhere in the archiving cycle, as a real one would).
   */
  holdMs?: number;
  stepTimeoutMs?: number;
  targets?: DrillTargets;
  onProgress?: (line: string) => void;
}

export async function evacuateDrill(o: EvacuateDrillOptions): Promise<RecoveryDrillReport> {
  const started = new Date();
  const targets = o.targets ?? DEFAULT_DRILL_TARGETS;
  const steps = new DrillSteps(o.stepTimeoutMs ?? 1800_000, o.onProgress ?? (() => undefined));
  const checks: DrillCheck[] = [];
  const findings: string[] = [];
  const run = randomBytes(6).toString('hex');
  const A = { ...o.primary, name: 'a' };
  const writer = new ProbeWriter([A], async () => 'a', run, steps.t0);
  /** Region B's server, once there is one to query. */
  let B: ProbeNode | undefined;
  let lostAt: number | undefined;
  let lastAcked: Ack | undefined;
  let firstWrite: number | undefined;
  let recovered: { commits: number; lastAcked?: Ack } | undefined;
  let restored: { dataDir: string; install: PostgresInstall } | undefined;
  let lost = false;
  let cutOver = false;
  let standbyState = '';
  try {
    await steps.phase('preflight', async () => {
      const backup = await chooseBackup(o.repo, {}, o.stanza);
      await createProbeTable(A);
      if (o.via.kind === 'restore') {
        const names = await readdir(o.via.dataDir).catch(() => []);
        if (names.length > 0) throw new StepFailed(`${o.via.dataDir} is not empty: the restore needs an empty or absent directory`);
      } else {
        const [r] = await query<{ r: boolean; streaming: boolean }>(o.via.standby, "SELECT pg_is_in_recovery() AS r, EXISTS (SELECT 1 FROM pg_stat_wal_receiver WHERE status = 'streaming') AS streaming");
        if (!r?.r) throw new StepFailed(`region B's standby ${o.via.standby.name} is not in recovery`);
        standbyState = r.streaming ? 'streaming from region A' : 'not streaming now (restore_command only)';
      }
      return `region B's repository ${o.repo.location} opened with its keys alone; newest backup ${backup.label}; ${o.via.kind === 'restore' ? `restore into ${o.via.dataDir}` : `promote ${o.via.standby.name}, ${standbyState}`}`;
    });
    await steps.phase('probe writer on region A', async () => {
      writer.start();
      await steps.waitFor('the probe writer to commit in region A', async () => writer.acked.length >= 50);
      // Until region B holds WAL past the first probe commit, as WAL normally leaves region A (archive_command
      // with archive_timeout, wal-receive): what is lost is then what a loss at any moment would cost.
      const first = writer.acked[0]!;
      // One segment switch so that the first commits leave now: archive_timeout alone may wait much longer
      // (after crash recovery PostgreSQL's checkpointer applies it only from its next checkpoint_timeout wakeup).
      await query(A, 'SELECT pg_switch_wal()');
      const [at] = await query<{ segment: string; offset: string; system: string }>(A, 'SELECT pg_walfile_name($1::pg_lsn) AS segment, (pg_walfile_name_offset($1::pg_lsn)).file_offset::text AS offset, system_identifier::text AS system FROM pg_control_system()', [first.lsn]);
      const scope = { stanza: o.stanza, systemIdentifier: at!.system };
      await steps.waitFor(`region B's repository to hold WAL past the first probe commit (${first.lsn}, in ${at!.segment})`, async () => {
        if (await isArchived(o.repo, scope, at!.segment)) return true;
        const streamed = await longestStreamed(o.repo, scope, at!.segment);
        return streamed !== undefined && (parseWalStreamName(streamed)?.length ?? 0) > Number(at!.offset);
      });
      const hold = o.holdMs ?? 1000 + Math.random() * 9000;
      await sleep(hold);
      return `${writer.acked.length} commits; region B held WAL past the first, then ${(hold / 1000).toFixed(1)} s more`;
    });
    await steps.phase('lose region A', async () => {
      lost = true;
      await o.loseRegion();
      lostAt = steps.now();
      await steps.waitFor('region A to stop taking commits', async () => writer.firstFailure !== undefined);
      await writer.stop();
      lastAcked = writer.acked.at(-1);
      return `${writer.acked.length} commits acknowledged, the last at +${(lastAcked?.at ?? 0).toFixed(2)} s (${lastAcked?.lsn ?? 'none'})`;
    });
    if (o.via.kind === 'restore') {
      const via = o.via;
      await steps.phase('restore in region B', async () => {
        const backup = await chooseBackup(o.repo, {}, o.stanza);
        const major = Math.floor((backup.postgres?.versionNum ?? 0) / 10000);
        const install = via.install ?? findPostgresFor(major);
        if (!install) throw new StepFailed(`no PostgreSQL ${major} server binaries on this machine for the restore`);
        await mkdir(via.dataDir, { recursive: true, mode: 0o700 });
        const user = serverUser();
        if (user) await chown(via.dataDir, user.uid, user.gid);
        const r = await restorePostgres(o.repo, backup.key, via.dataDir, { stanza: o.stanza, target: { action: 'promote' }, restoreCommand: via.restoreCommand });
        restored = { dataDir: via.dataDir, install };
        return `${backup.label}: ${r.files} files, ${(r.bytes / 1e6).toFixed(1)} MB`;
      });
      await steps.phase('start and recover', async () => {
        const opts = `-p ${via.port} -c listen_addresses=${via.listen} -c unix_socket_directories=${via.dataDir}`;
        const r = await runAsServerUser(join(restored!.install.bin, 'pg_ctl'), ['-D', via.dataDir, '-o', opts, '-l', `${via.dataDir}.log`, '-w', '-t', '3600', 'start'], { ...(via.serverEnv ?? {}) });
        if (r.status !== 0) throw new StepFailed(`pg_ctl start: ${r.stderr.trim().slice(-500)}`);
        B = restoredServer(A, via.listen, via.port);
        await steps.waitFor('the restored server to finish recovery', async () => (await query<{ r: boolean }>(B!, 'SELECT pg_is_in_recovery() AS r'))[0]?.r === false);
        return undefined;
      });
    } else {
      const via = o.via;
      await steps.phase('promote region B', async () => {
        B = via.standby;
        // Not waited for in the call (a statement timeout would cut a slow end-of-recovery checkpoint short): polled below.
        await query(B, 'SELECT pg_promote(false)');
        await steps.waitFor(`${B.name} to leave recovery`, async () => (await query<{ r: boolean }>(B!, 'SELECT pg_is_in_recovery() AS r'))[0]?.r === false);
        return undefined;
      });
    }
    await steps.phase('check what region B holds', async () => {
      // No probe table at all: region B recovered to before the drill began.
      const present = await probeRows(B!, run).catch((e: { code?: string }) => (e.code === '42P01' ? new Set<number>() : Promise.reject(e)));
      const missing = writer.acked.filter((a) => !present.has(a.id));
      const held = writer.acked.filter((a) => present.has(a.id));
      recovered = { commits: held.length, ...(held.length ? { lastAcked: held.at(-1)! } : {}) };
      checks.push({ name: 'probe rows', ok: held.length > 0, summary: `${held.length} of ${writer.acked.length} acknowledged commits held, ${missing.length} lost` });
      if (held.length === 0) findings.push(`region B holds none of the ${writer.acked.length} commits region A acknowledged`);
      // A gap is a hole, not a tail: WAL replay applies commits in order.
      const firstMissing = missing[0];
      if (firstMissing && recovered.lastAcked && firstMissing.id < recovered.lastAcked.id) findings.push(`region B lacks row ${firstMissing.id} but holds later ones: recovery skipped commits`);
      return `${held.length} held, ${missing.length} lost`;
    });
    await steps.phase('cut over to region B', async () => {
      if (!o.cutover) return 'no cutover configured';
      await o.cutover('b');
      cutOver = true;
      if (o.resolve && o.addressB) {
        const addresses = await o.resolve();
        const ok = addresses.length === 1 && addresses[0] === o.addressB;
        checks.push({ name: 'cutover name', ok, summary: `resolves to ${addresses.join(', ') || 'nothing'}` });
        if (!ok) findings.push(`the cutover name resolves to ${addresses.join(', ') || 'nothing'}, not region B's ${o.addressB}`);
      }
      return undefined;
    });
    await steps.phase('accept writes in region B', async () => {
      await query(B!, `INSERT INTO coffer_drill_probe (run, id, node) VALUES ($1, 0, 'b')`, [run]);
      firstWrite = steps.now();
      checks.push({ name: 'writes accepted', ok: true, summary: `a commit on region B's server at +${firstWrite.toFixed(2)} s` });
      return undefined;
    });
  } catch (e) {
    await writer.stop();
    findings.push((e as Error).message);
  }
  if (!o.keep) {
    await steps
      .phase('put back', async () => {
        const done: string[] = [];
        if (restored) {
          await runAsServerUser(join(restored.install.bin, 'pg_ctl'), ['-D', restored.dataDir, '-m', 'immediate', '-w', 'stop']);
          await rm(restored.dataDir, { recursive: true, force: true });
          await rm(`${restored.dataDir}.log`, { force: true });
          done.push('the restored server stopped and removed');
        }
        if (lost && o.restoreRegion) {
          await o.restoreRegion();
          done.push('region A back');
        }
        if (cutOver && o.cutover) {
          await o.cutover('a');
          done.push('the name on region A again');
        }
        if (o.via.kind === 'promote' && o.via.rebuild && lost) {
          await o.via.rebuild();
          done.push(`${o.via.standby.name} a standby again`);
        }
        if (lost && o.restoreRegion) {
          await steps.waitFor('region A to take commits again', async () => (await query(A, 'SELECT 1')).length === 1);
          await dropProbeRun(A, run);
        }
        return done.join('; ');
      })
      .catch((e: unknown) => findings.push(`putting things back: ${(e as Error).message}`));
  }

  const rto = lostAt !== undefined && firstWrite !== undefined ? rtoAgainst(firstWrite - lostAt, targets.rtoSeconds, `region A lost → region B ${o.via.kind === 'restore' ? 'restored, recovered' : 'promoted'}, name moved, first write accepted`) : undefined;
  if (rto && !rto.met) findings.push(`RTO: region B took writes ${rto.seconds.toFixed(1)} s after region A was lost, over the ${targets.rtoSeconds} s target`);
  let rpo: RecoveryDrillReport['rpo'];
  if (recovered && lastAcked) {
    const newest = recovered.lastAcked;
    const seconds = newest ? Math.max(0, lastAcked.at - newest.at) : lastAcked.at;
    const bytes = newest ? Number(parseLsn(lastAcked.lsn) - parseLsn(newest.lsn)) : undefined;
    rpo = rpoAgainst({ seconds, commits: writer.acked.length - recovered.commits, ...(bytes !== undefined ? { bytes } : {}) }, targets.rpoSeconds, "region A's acknowledged commits region B does not hold: from the newest it holds to the last acknowledged (WAL bytes: their positions' distance, a segment switched by archive_timeout counted whole)");
    if (!rpo.met) findings.push(`RPO: region B lacks the last ${rpo.seconds!.toFixed(1)} s of region A's commits (${rpo.commits} commits), over the ${targets.rpoSeconds} s target: stream WAL to region B (wal-receive with mirrors, or --wal-mirror) or archive more often`);
  }
  return finishReport('evacuate', o.cluster, started, { ok: findings.length === 0 && checks.every((c) => c.ok) && rto !== undefined, phases: steps.phases, ...(rto ? { rto } : {}), ...(rpo ? { rpo } : {}), checks, findings });
}

/**
 * Region B's restored server as the probe writer reaches it: region A's way
 * of connecting (user, database, TLS, password) at region B's address — the
 * same cluster, restored.
 */
function restoredServer(a: ProbeNode, host: string, port: number): ProbeNode {
  const { host: _h, hostaddr: _a, port: _p, ...how } = conninfoSettings(a.conninfo, 'drills.evacuate cluster');
  return { name: 'b', conninfo: keywordValueString({ ...how, host, port: String(port) }), ...(a.password !== undefined ? { password: a.password } : {}) };
}
