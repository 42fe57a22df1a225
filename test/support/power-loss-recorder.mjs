/**
 * Loaded with `--import` into the coffer processes of the power-loss test
 * (test/support/power-loss.ts): an interposed file layer that records what
 * each fsync made durable under COFFER_TEST_POWER_ROOT, and nothing else.
 * A file's fsync records its content then (by inode and birth time, so that a
 * reused inode number is not taken for the old file); a directory's fsync
 * records its entries then. The test replays a prefix of the journal to get
 * what a machine that lost power at that moment would find on its disk:
 * every write that was not synced is gone, a new name whose directory was
 * not synced is gone, a name whose file was never synced is an empty file.
 *
 * Every fsync of Coffer's own code goes through a FileHandle (`fh.sync()`,
 * and `fsyncDir` opens the directory and syncs that handle), so patching the
 * prototype reaches them all, in workers and the tuned gc/check run too.
 */
import { appendFileSync, fstatSync, lstatSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { open } from 'node:fs/promises';

const root = process.env.COFFER_TEST_POWER_ROOT;
const journal = process.env.COFFER_TEST_POWER_JOURNAL;
/** Set: a careless store, whose directory syncs do nothing (the test proves the harness notices). */
const ignoreDirs = process.env.COFFER_TEST_POWER_IGNORE_DIRS === '1';

/** A file's identity: inode and birth time (an inode number is reused once its file is deleted). */
function identity(st) {
  return `${st.ino}:${st.birthtimeNs}`;
}

function record(fd) {
  let path;
  try {
    path = readlinkSync(`/proc/self/fd/${fd}`);
  } catch {
    return;
  }
  if (path !== root && !path.startsWith(`${root}/`)) return;
  const st = fstatSync(fd, { bigint: true });
  const rel = path.slice(root.length) || '/';
  let event;
  if (st.isDirectory()) {
    if (ignoreDirs) return;
    const entries = [];
    for (const name of readdirSync(path)) {
      const s = lstatSync(`${path}/${name}`, { bigint: true, throwIfNoEntry: false });
      if (s) entries.push([name, identity(s), s.isDirectory()]);
    }
    event = { dir: rel, entries };
  } else {
    // A file deleted since it was opened: its content can no longer be reached by any name.
    if (path.endsWith(' (deleted)')) return;
    event = { file: identity(st), data: readFileSync(path).toString('base64') };
  }
  appendFileSync(journal, `${JSON.stringify(event)}\n`);
}

if (root && journal) {
  const probe = await open(process.execPath, 'r');
  const proto = Object.getPrototypeOf(probe);
  await probe.close();
  for (const name of ['sync', 'datasync']) {
    const real = proto[name];
    proto[name] = async function (...args) {
      const r = await real.apply(this, args);
      record(this.fd);
      return r;
    };
  }
}
