/**
 * Coffer's error registry. Every failure a caller may want to act on is a
 * subclass of {@link CofferError} with a stable `code`; the CLI maps codes to
 * exit statuses, so codes never change meaning once released. Messages name the
 * object key or file at fault and never contain key material.
 */
import { displayPath } from './names.js';

export type CofferErrorCode =
  | 'COFFER_CORRUPT_OBJECT'
  | 'COFFER_MISSING_OBJECT'
  | 'COFFER_WRONG_KEY'
  | 'COFFER_NOT_A_REPOSITORY'
  | 'COFFER_ALREADY_INITIALISED'
  | 'COFFER_OBJECT_CONFLICT'
  | 'COFFER_BACKUP_NOT_FOUND'
  | 'COFFER_TARGET_NOT_EMPTY'
  | 'COFFER_INVALID_ARGUMENT'
  | 'COFFER_UNSUPPORTED_FORMAT'
  | 'COFFER_SOURCE_ERROR'
  | 'COFFER_STORE_UNAVAILABLE'
  | 'COFFER_CHECK_FAILED'
  | 'COFFER_TARGET_IN_USE'
  | 'COFFER_POSTGRES_ERROR'
  | 'COFFER_STORE_ACCESS_DENIED'
  | 'COFFER_KEY_UNAVAILABLE'
  | 'COFFER_STANZA_MISMATCH'
  | 'COFFER_ARCHIVE_CHECK_FAILED'
  | 'COFFER_NO_SPACE'
  | 'COFFER_PERMISSION_DENIED'
  | 'COFFER_FILE_ERROR'
  | 'COFFER_LEASE_LOST'
  | 'COFFER_REPOSITORY_BUSY'
  | 'COFFER_SANDBOX_UNAVAILABLE'
  | 'COFFER_VERIFY_FAILED'
  | 'COFFER_INVALID_POLICY'
  | 'COFFER_CUTOVER_FAILED';

export class CofferError extends Error {
  readonly code: CofferErrorCode;
  constructor(code: CofferErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

/** An object's bytes do not match its SHA-256 name, its AEAD tag, or its chunk id. */
export class CorruptObjectError extends CofferError {
  /** Store key of the damaged object. */
  readonly key: string;
  /** Files (relative paths) whose restored content depends on the damaged object. */
  readonly affectedFiles: readonly string[];
  constructor(key: string, detail: string, affectedFiles: readonly string[] = []) {
    super(
      'COFFER_CORRUPT_OBJECT',
      `corrupt object ${key}: ${detail}` + describeFiles(affectedFiles),
    );
    this.key = key;
    this.affectedFiles = affectedFiles;
  }
  /** The same fault, with the files that need the object attached. */
  withAffectedFiles(files: readonly string[]): CorruptObjectError {
    const detail = this.message.slice(`corrupt object ${this.key}: `.length).replace(/ \(affects .*\)$/s, '');
    return new CorruptObjectError(this.key, detail, files);
  }
}

/** An object that the repository's metadata references is not in the store. */
export class MissingObjectError extends CofferError {
  readonly key: string;
  readonly affectedFiles: readonly string[];
  constructor(key: string, detail = 'not found in the store', affectedFiles: readonly string[] = []) {
    super('COFFER_MISSING_OBJECT', `missing object ${key}: ${detail}` + describeFiles(affectedFiles));
    this.key = key;
    this.affectedFiles = affectedFiles;
  }
}

/** The passphrase, key file or KMS key does not open the repository's data keys. */
export class WrongKeyError extends CofferError {
  constructor(detail: string) {
    super('COFFER_WRONG_KEY', `wrong key: ${detail}`);
  }
}

/** None of the key providers given could even try to open the repository: it is wrapped by others. */
export class NoApplicableKeyError extends WrongKeyError {
  /** The wrappings the repository has, as `provider/keyRef`. */
  readonly wrappedBy: readonly string[];
  constructor(wrappedBy: readonly string[]) {
    super(`none of the given keys can open this repository (it is wrapped by ${wrappedBy.join(', ')})`);
    this.wrappedBy = wrappedBy;
  }
}

/** The location holds no Coffer repository (no readable `config`). */
export class NotARepositoryError extends CofferError {
  readonly location: string;
  constructor(location: string, detail = 'no repository config found') {
    super('COFFER_NOT_A_REPOSITORY', `not a Coffer repository: ${location}: ${detail}`);
    this.location = location;
  }
}

export class AlreadyInitialisedError extends CofferError {
  readonly location: string;
  constructor(location: string, detail?: string) {
    super('COFFER_ALREADY_INITIALISED', detail ? `cannot create a repository at ${location}: ${detail}` : `a repository already exists at ${location}`);
    this.location = location;
  }
}

/** A create-only write found an object of the same name with different bytes. */
export class ObjectConflictError extends CofferError {
  readonly key: string;
  constructor(key: string, detail = 'an object with different bytes already exists under this name') {
    super('COFFER_OBJECT_CONFLICT', `object conflict at ${key}: ${detail}`);
    this.key = key;
  }
}

export class BackupNotFoundError extends CofferError {
  readonly selector: string;
  constructor(selector: string, detail = 'no backup matches') {
    super('COFFER_BACKUP_NOT_FOUND', `backup ${JSON.stringify(selector)}: ${detail}`);
    this.selector = selector;
  }
}

export class TargetNotEmptyError extends CofferError {
  readonly path: string;
  constructor(path: string, detail?: string) {
    super('COFFER_TARGET_NOT_EMPTY', `restore target ${path} is not empty${detail ? `: ${detail}` : ''}`);
    this.path = path;
  }
}

/** A setting or argument is out of range or malformed; `setting` names it. */
export class InvalidArgumentError extends CofferError {
  readonly setting: string;
  constructor(setting: string, detail: string) {
    super('COFFER_INVALID_ARGUMENT', `invalid ${setting}: ${detail}`);
    this.setting = setting;
  }
}

/** The repository was written by a format this version does not read. */
export class UnsupportedFormatError extends CofferError {
  readonly key: string;
  constructor(key: string, detail: string) {
    super('COFFER_UNSUPPORTED_FORMAT', `unsupported format in ${key}: ${detail}`);
    this.key = key;
  }
}

/** The data being backed up could not be read (file vanished, permission denied…). */
export class SourceError extends CofferError {
  readonly path: string;
  constructor(path: string, detail: string, options?: { cause?: unknown }) {
    super('COFFER_SOURCE_ERROR', `cannot read ${path}: ${detail}`, options);
    this.path = path;
  }
}

/** The store could not be reached or kept failing after retries. */
export class StoreUnavailableError extends CofferError {
  readonly key: string;
  constructor(key: string, detail: string, options?: { cause?: unknown }) {
    super('COFFER_STORE_UNAVAILABLE', `store unavailable for ${key}: ${detail}`, options);
    this.key = key;
  }
}

/**
 * The store refused a request outright: credentials or permissions, or an
 * object under retention (S3 Object Lock) that may not be deleted or replaced.
 * Retrying does not help.
 */
export class StoreAccessDeniedError extends CofferError {
  readonly key: string;
  constructor(key: string, detail: string, options?: { cause?: unknown }) {
    super('COFFER_STORE_ACCESS_DENIED', `store refused access to ${key}: ${detail}`, options);
    this.key = key;
  }
}

/** The key service (AWS KMS) could not be reached or kept failing; the key itself may be fine. */
export class KeyUnavailableError extends CofferError {
  readonly keyRef: string;
  constructor(keyRef: string, detail: string, options?: { cause?: unknown }) {
    super('COFFER_KEY_UNAVAILABLE', `key service unavailable for ${keyRef}: ${detail}`, options);
    this.keyRef = keyRef;
  }
}

/** The restore target is in use (a running or crashed server's postmaster.pid is there). */
export class TargetInUseError extends CofferError {
  readonly path: string;
  constructor(path: string, detail: string) {
    super('COFFER_TARGET_IN_USE', `restore target ${path} is in use: ${detail}`);
    this.path = path;
  }
}

/** PostgreSQL refused or failed a step of a backup (connection, pg_backup_start/stop…). */
export class PostgresError extends CofferError {
  readonly step: string;
  constructor(step: string, detail: string, options?: { cause?: unknown }) {
    super('COFFER_POSTGRES_ERROR', `PostgreSQL ${step}: ${detail}`, options);
    this.step = step;
  }
}

/**
 * WAL or a backup does not belong to the stanza it is given for: another
 * cluster's system identifier, a WAL segment size or major version the
 * stanza does not have, or a timeline the stanza's history does not know.
 */
export class StanzaMismatchError extends CofferError {
  readonly stanza: string;
  constructor(stanza: string, detail: string) {
    super('COFFER_STANZA_MISMATCH', `stanza ${JSON.stringify(stanza)}: ${detail}`);
    this.stanza = stanza;
  }
}

/** A backup's WAL did not reach this repository in time: the backup would not be restorable from it, so it is not committed. */
export class ArchiveCheckError extends CofferError {
  /** The first WAL file found missing, when one is. */
  readonly walFile: string | undefined;
  constructor(detail: string, walFile?: string) {
    super('COFFER_ARCHIVE_CHECK_FAILED', `archive check: ${walFile ? `WAL ${walFile} ` : ''}${detail}`);
    this.walFile = walFile;
  }
}

/**
 * A writer's lease ran out before it could commit (the process was stopped,
 * starved, or could not reach the store to renew it): garbage collection may
 * have deleted what it meant to reference, so it commits nothing.
 */
export class LeaseLostError extends CofferError {
  readonly lease: string;
  constructor(lease: string, detail: string) {
    super('COFFER_LEASE_LOST', `lease ${lease} lost: ${detail}; nothing was committed, run it again`);
    this.lease = lease;
  }
}

/** Work that excludes others of its kind (garbage collection) found another one running, or waited too long for writers. */
export class RepositoryBusyError extends CofferError {
  constructor(detail: string) {
    super('COFFER_REPOSITORY_BUSY', detail);
  }
}

/** `check` found problems; `problems` lists each one as its own error. */
export class CheckFailedError extends CofferError {
  readonly problems: readonly CofferError[];
  constructor(problems: readonly CofferError[]) {
    super('COFFER_CHECK_FAILED', `check found ${problems.length} problem(s):\n` + problems.map((p) => `  - ${p.message}`).join('\n'));
    this.problems = problems;
  }
}

/** A local file system ran out of space (ENOSPC, EDQUOT) while writing `path`. */
export class NoSpaceError extends CofferError {
  readonly path: string;
  constructor(path: string, options?: { cause?: unknown }) {
    super('COFFER_NO_SPACE', `no space left writing ${path}`, options);
    this.path = path;
  }
}

/** The operating system refused access to a local `path` (EACCES, EPERM, EROFS). */
export class PermissionDeniedError extends CofferError {
  readonly path: string;
  constructor(path: string, detail: string, options?: { cause?: unknown }) {
    super('COFFER_PERMISSION_DENIED', `permission denied: ${path}: ${detail}`, options);
    this.path = path;
  }
}

/** A local path is not what the operation needs (missing, a file where a directory belongs, or the reverse). */
export class FileError extends CofferError {
  readonly path: string;
  constructor(path: string, detail: string, options?: { cause?: unknown }) {
    super('COFFER_FILE_ERROR', `${path}: ${detail}`, options);
    this.path = path;
  }
}

const FILE_ERRORS: Record<string, string> = {
  ENOENT: 'no such file or directory',
  ENOTDIR: 'a path component is not a directory',
  EISDIR: 'is a directory',
  EEXIST: 'already exists',
  ENOTEMPTY: 'directory not empty',
  ELOOP: 'too many levels of symbolic links',
  ENAMETOOLONG: 'name too long',
};

/**
 * The typed error for a Node system error that names a path (ENOSPC,
 * EACCES, ENOTDIR…), or undefined for anything else. Used where an error
 * leaves the library's callers, so no file-system failure surfaces untyped.
 */
export function fromSystemError(e: unknown): CofferError | undefined {
  if (e instanceof CofferError || typeof e !== 'object' || e === null) return undefined;
  const { code, path } = e as NodeJS.ErrnoException;
  if (typeof code !== 'string') return undefined;
  const where = typeof path === 'string' ? path : '(a local file)';
  if (code === 'ENOSPC' || code === 'EDQUOT') return new NoSpaceError(where, { cause: e });
  if (code === 'EACCES' || code === 'EPERM' || code === 'EROFS') return new PermissionDeniedError(where, code === 'EROFS' ? 'read-only file system' : code, { cause: e });
  if (FILE_ERRORS[code] && typeof path === 'string') return new FileError(where, FILE_ERRORS[code]!, { cause: e });
  return undefined;
}

function describeFiles(files: readonly string[]): string {
  if (files.length === 0) return '';
  const shown = files.slice(0, 20).map(displayPath).join(', ');
  return ` (affects ${files.length} file(s): ${shown}${files.length > 20 ? ', …' : ''})`;
}

export function isCofferError(e: unknown): e is CofferError {
  return e instanceof CofferError;
}

/** A verification sandbox cannot be made here: no network namespace, no server binaries of the backup's major version. Nothing was verified. */
export class SandboxUnavailableError extends CofferError {
  constructor(detail: string) {
    super('COFFER_SANDBOX_UNAVAILABLE', `verification sandbox: ${detail}`);
  }
}

/** `verify` ran and a check failed; `failures` names each (object, segment, relation or query at fault). */
export class VerifyFailedError extends CofferError {
  readonly failures: readonly string[];
  constructor(backup: string, failures: readonly string[]) {
    super('COFFER_VERIFY_FAILED', `verification of ${backup} failed:\n` + failures.map((f) => `  - ${f}`).join('\n'));
    this.failures = failures;
  }
}

/** Failover could not move traffic to the new primary: the DNS server refused or did not answer, or the cutover hook failed. */
export class CutoverError extends CofferError {
  constructor(
    readonly target: string,
    detail: string,
    options?: { cause?: unknown },
  ) {
    super('COFFER_CUTOVER_FAILED', `cutover to ${target}: ${detail}`, options);
  }
}
