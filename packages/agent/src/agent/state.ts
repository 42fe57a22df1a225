/**
 * What the agent remembers across restarts, in one JSON file in its state
 * directory, replaced whole (written beside it, synced, renamed): per job,
 * the scheduled time of the last run it started (to find runs missed while
 * it was down), a run under way (one interrupted by a stop or a crash is a
 * missed run), and the last result and last success (so "backup too old"
 * counts from the last good backup, not from the agent's start).
 */
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { CofferError, writeDurably } from '@coffer/engine';
import type { StepLabels } from '../jobs/job-steps.js';

export interface StepRecord {
  name: string;
  labels: StepLabels;
  startedAt: string;
  seconds: number;
  exitStatus: number;
  figures: Record<string, number>;
  error?: string;
}

export interface JobRecord {
  /** The cron occurrence the last run started for (absent: started by hand or to catch up). */
  lastScheduled?: string;
  /** A run under way: when it started, for which occurrence. */
  running?: { since: string; scheduled?: string };
  lastRun?: { startedAt: string; endedAt: string; ok: boolean; tries: number; stopped: boolean; steps: StepRecord[] };
  lastSuccess?: string;
  /** Per step (its name), when it last succeeded (Unix seconds), for its metrics. */
  stepSuccess?: Record<string, number>;
}

export interface AgentState {
  version: 1;
  jobs: Record<string, JobRecord>;
}

export class StateFile {
  readonly path: string;
  private writing: Promise<void> = Promise.resolve();

  constructor(readonly dir: string) {
    this.path = join(dir, 'state.json');
  }

  /** The state the last agent left; an empty one on a first start. A damaged file is an error, not a fresh start. */
  async load(): Promise<AgentState> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    let text: string;
    try {
      text = await readFile(this.path, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return { version: 1, jobs: {} };
      throw e;
    }
    let state: AgentState;
    try {
      state = JSON.parse(text) as AgentState;
    } catch {
      state = { version: 0 } as unknown as AgentState;
    }
    // Damaged (a disk that lost it): refused by name rather than taken as a first start, which would forget what runs were missed.
    if (state.version !== 1 || typeof state.jobs !== 'object' || state.jobs === null) throw new CofferError('COFFER_FILE_ERROR', `${this.path} is not an agent state file of version 1: move it aside to start afresh (missed runs are then not caught up)`);
    return state;
  }

  /** Saves `state` (writes are queued: the last one lands last). */
  save(state: AgentState): Promise<void> {
    const text = JSON.stringify(state, null, 1);
    this.writing = this.writing.then(() => replaceFile(this.path, text)).catch(() => replaceFile(this.path, text));
    return this.writing;
  }
}

/** Writes `text` to `path` whole (the engine's durable replace: beside it, synced, renamed, directory synced). */
export function replaceFile(path: string, text: string, mode = 0o600): Promise<void> {
  return writeDurably(path, text, mode);
}
