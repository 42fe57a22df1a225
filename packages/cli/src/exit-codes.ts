import type { CofferErrorCode } from '@coffer/engine';

/** Exit statuses, one per error class; stable, documented in the README. */
export const EXIT_CODES: Record<CofferErrorCode, number> = {
  COFFER_INVALID_ARGUMENT: 3,
  COFFER_NOT_A_REPOSITORY: 4,
  COFFER_ALREADY_INITIALISED: 5,
  COFFER_WRONG_KEY: 6,
  COFFER_BACKUP_NOT_FOUND: 7,
  COFFER_TARGET_NOT_EMPTY: 8,
  COFFER_SOURCE_ERROR: 9,
  COFFER_MISSING_OBJECT: 10,
  COFFER_CORRUPT_OBJECT: 11,
  COFFER_OBJECT_CONFLICT: 12,
  COFFER_UNSUPPORTED_FORMAT: 13,
  COFFER_STORE_UNAVAILABLE: 14,
  COFFER_CHECK_FAILED: 15,
  COFFER_TARGET_IN_USE: 17,
  COFFER_POSTGRES_ERROR: 18,
  COFFER_STORE_ACCESS_DENIED: 19,
  COFFER_KEY_UNAVAILABLE: 20,
  COFFER_STANZA_MISMATCH: 21,
  COFFER_ARCHIVE_CHECK_FAILED: 22,
  COFFER_NO_SPACE: 23,
  COFFER_PERMISSION_DENIED: 24,
  COFFER_FILE_ERROR: 25,
  COFFER_LEASE_LOST: 28,
  COFFER_REPOSITORY_BUSY: 29,
  COFFER_SANDBOX_UNAVAILABLE: 31,
  COFFER_VERIFY_FAILED: 32,
  COFFER_INVALID_POLICY: 34,
  COFFER_CUTOVER_FAILED: 35,
};

/** Unexpected failures (bugs, unclassified system errors). */
export const EXIT_INTERNAL = 1;
/** Command-line usage errors (unknown option, missing argument). */
export const EXIT_USAGE = 2;

/** A files backup completed, but files kept changing while they were read (listed in the summary), like tar's "file changed as we read it". */
export const EXIT_FILES_CHANGED = 26;

/** `repair` finished, but backups remain that cannot be restored in full (or WAL files are lost): listed in its report. */
export const EXIT_REPAIR_INCOMPLETE = 27;

/** `bucket setup --check`: the bucket lacks what setup would give it (listed in its report). */
export const EXIT_BUCKET_NOT_SET_UP = 30;

/** A PostgreSQL backup completed, but pages failed their checksum (twice) as they were read: stored as read, listed per file in the manifest and on stderr, like pgBackRest's warnings. */
export const EXIT_DAMAGED_PAGES = 33;
