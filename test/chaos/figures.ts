/**
 * The reliability suite's figures. Each section adds what it did (trials,
 * inputs, faults) and what went wrong (lost objects, untyped errors,
 * secrets found) to a JSON file per section under `CHAOS_FIGURES_DIR`, which
 * `npm run chaos` sums into `benchmarks/results/reliability.md`. Under a plain
 * `npm test` the directory is unset and the figures go nowhere: the
 * assertions are what count there.
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

/** The columns of the suite's table. */
export interface Figures {
  trials: number;
  kills: number;
  powerCuts: number;
  storeFaults: number;
  diskCases: number;
  concurrentMinutes: number;
  fuzzInputs: number;
  badCliInputs: number;
  lost: number;
  untyped: number;
  secrets: number;
}

export const NO_FIGURES: Figures = { trials: 0, kills: 0, powerCuts: 0, storeFaults: 0, diskCases: 0, concurrentMinutes: 0, fuzzInputs: 0, badCliInputs: 0, lost: 0, untyped: 0, secrets: 0 };

/** Whether this is the long run (`npm run chaos -- --long`). */
export const LONG = process.env.CHAOS_LONG === '1';

/** `short` under `npm test` and `npm run chaos`, `long` with `--long`. */
export function sized(short: number, long: number): number {
  return LONG ? long : short;
}

/** Adds `add` to section `section`'s figures. */
export async function addFigures(section: string, add: Partial<Figures>): Promise<void> {
  const dir = process.env.CHAOS_FIGURES_DIR;
  if (!dir) return;
  await mkdir(dir, { recursive: true });
  const file = join(dir, `${section}.json`);
  const now: Figures = { ...NO_FIGURES, ...(JSON.parse(await readFile(file, 'utf8').catch(() => '{}')) as Partial<Figures>) };
  for (const [k, v] of Object.entries(add) as [keyof Figures, number][]) now[k] += v;
  await writeFile(file, JSON.stringify(now, null, 2) + '\n');
}
