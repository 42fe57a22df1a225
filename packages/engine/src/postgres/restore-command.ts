/**
 * What `restore_command`'s exit status means to PostgreSQL, and how Coffer's
 * wal-fetch answers. PostgreSQL reads any status up to 125 as "this file is
 * not in the archive" and, in archive recovery, ends recovery there: with no
 * target (restore to the end of the archive) an outage or a damaged object in
 * the middle of recovery would promote the cluster silently short of its
 * data. A status above 125 is fatal to the startup process instead.
 *
 * - fetched: 0.
 * - not archived (the store answered "absent" for the file's record): 1.
 * - any other failure, in archive recovery (`recovery.signal`): 255, so
 *   recovery stops with the reason in the server log; once the cause is
 *   fixed, starting the server again continues where it stopped.
 * - any other failure, in standby mode (`standby.signal`): 1, because
 *   PostgreSQL retries (and streams) there, and a fatal status would shut
 *   the standby down on a store blip.
 */
import { access } from 'node:fs/promises';
import { join } from 'node:path';

export const RESTORE_FETCHED = 0;
export const RESTORE_NOT_ARCHIVED = 1;
export const RESTORE_FATAL = 255;

export type RecoveryMode = 'recovery' | 'standby';

/**
 * Files no cluster archives, answered "not archived" without asking the
 * store. Timeline 1 has no history file: PostgreSQL writes one for each new
 * timeline (2 and up), naming its parent. It still asks for
 * `00000001.history` once, at the promotion that starts timeline 2, to copy
 * the parent's history into the new file — empty for timeline 1 either way.
 * On S3 that call cost a process start and a repository opening at the end
 * of every restore's recovery.
 */
export function neverArchived(name: string): boolean {
  return name === '00000001.history';
}

/** The recovery mode of the data directory restore_command runs in (its working directory). */
export async function recoveryMode(pgdata: string): Promise<RecoveryMode> {
  return access(join(pgdata, 'standby.signal')).then(
    () => 'standby',
    () => 'recovery',
  );
}

export function restoreCommandStatus(outcome: 'fetched' | 'absent' | 'failed', mode: RecoveryMode): number {
  if (outcome === 'fetched') return RESTORE_FETCHED;
  if (outcome === 'absent') return RESTORE_NOT_ARCHIVED;
  return mode === 'standby' ? RESTORE_NOT_ARCHIVED : RESTORE_FATAL;
}

/** Quotes one word for the shell that runs archive_command and restore_command. */
export function shellQuote(s: string): string {
  return /^[A-Za-z0-9_\/.:=@%+-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

/** A command line for PostgreSQL: each word quoted, `%f`/`%p` placeholders left as they are. */
export function commandLine(words: readonly string[]): string {
  return words.map((a) => (a === '%f' || a === '%p' ? a : shellQuote(a))).join(' ');
}
