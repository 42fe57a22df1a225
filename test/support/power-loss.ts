/**
 * Power loss, simulated: coffer processes run with an interposed file layer
 * (power-loss-recorder.mjs) that journals what each fsync made durable under
 * one directory; `imageAt(k)` writes out what that directory would hold
 * after the machine lost power right after the k-th fsync — only what was
 * synced by then, with the weakest guarantees POSIX gives: a file's content
 * survives only if the file was synced, a name only if its directory was.
 */
import { createHash } from 'node:crypto';
import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const RECORDER = fileURLToPath(new URL('./power-loss-recorder.mjs', import.meta.url));

type DirEvent = { dir: string; entries: [name: string, identity: string, isDir: boolean][] };
type Event = DirEvent | { file: string; data: string };

export class PowerJournal {
  private events: Event[] = [];

  constructor(
    /** The directory whose durability is recorded (a repository). */
    readonly root: string,
    readonly file: string,
  ) {}

  /** The environment that makes a coffer process record its fsyncs here. */
  get env(): Record<string, string> {
    return { NODE_OPTIONS: `--import ${RECORDER}`, COFFER_TEST_POWER_ROOT: this.root, COFFER_TEST_POWER_JOURNAL: this.file };
  }

  /** Fsyncs recorded so far (re-reads the journal). */
  async length(): Promise<number> {
    const text = await readFile(this.file, 'utf8').catch(() => '');
    this.events = text
      .split('\n')
      .filter((l) => l !== '')
      .map((l) => JSON.parse(l) as Event);
    return this.events.length;
  }

  /** Writes into `into` what `root` holds after power is lost right after fsync number `k` (0: before any). */
  async imageAt(k: number, into: string): Promise<{ files: number; emptied: number }> {
    // Nothing from the journal yet: read it (the caller may not have asked for its length).
    if (this.events.length === 0) await this.length();
    const files = new Map<string, Buffer>();
    const dirs = new Map<string, DirEvent>();
    for (const e of this.events.slice(0, k)) {
      if ('dir' in e) dirs.set(e.dir, e);
      else files.set(e.file, Buffer.from(e.data, 'base64'));
    }
    const counts = { files: 0, emptied: 0 };
    const write = async (rel: string, at: string): Promise<void> => {
      await mkdir(at, { recursive: true });
      for (const [name, identity, isDir] of dirs.get(rel)?.entries ?? []) {
        const child = rel === '/' ? `/${name}` : `${rel}/${name}`;
        if (isDir) {
          await write(child, join(at, name));
          continue;
        }
        const data = files.get(identity);
        // A durable name whose file never was: what a file system that journals metadata leaves.
        if (!data) counts.emptied++;
        await writeFile(join(at, name), data ?? Buffer.alloc(0));
        counts.files++;
      }
    };
    await rm(into, { recursive: true, force: true });
    await write('/', into);
    return counts;
  }
}

/** Every regular file under `root` but the store's scratch area, with the SHA-256 of its content. */
export async function storedFiles(root: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const e of await readdir(root, { recursive: true, withFileTypes: true })) {
    if (!e.isFile()) continue;
    const rel = join(e.parentPath, e.name).slice(root.length + 1);
    if (rel.startsWith('.tmp/')) continue;
    out.set(rel, createHash('sha256').update(await readFile(join(root, rel))).digest('hex'));
  }
  return out;
}

/** What differs between two `storedFiles` maps: names only in `a`, only in `b`, or with other content. */
export function differences(a: Map<string, string>, b: Map<string, string>): string[] {
  const out: string[] = [];
  for (const [k, v] of a) if (!b.has(k)) out.push(`only before: ${k}`);
  else if (b.get(k) !== v) out.push(`changed: ${k}`);
  for (const k of b.keys()) if (!a.has(k)) out.push(`only after: ${k}`);
  return out.sort();
}
