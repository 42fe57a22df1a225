/**
 * @coffer/engine — content-addressed, deduplicating, encrypted backups.
 *
 * Layers, leaves first: errors, bytes → store (ObjectStore, FileStore,
 * MemoryStore) and keys (KeyProvider, LocalKeyProvider) → chunking, crypto →
 * format (chunk codec, packs, index, manifests, config) → repository →
 * backup, restore, check.
 */
export * from './errors.js';
export type { ObjectStore, ObjectInfo, ByteRange, PutOutcome, StoreProperties, VersionedObjects, ObjectRetention, LockPolicy, HiddenObject, NoncurrentUsage } from './store/object-store.js';
export { collectList, assertValidKey } from './store/object-store.js';
export { checkRange } from './store/range.js';
export { FileStore, fileStorePath } from './store/file-store.js';
export { MemoryStore } from './store/memory-store.js';
export { PrefixedStore } from './store/prefixed-store.js';
export { processAlive, postmasterPid } from './postgres/process-alive.js';
export { encodeCarriedJson, decodeCarriedJson } from './format/carried-json.js';
export { ReplicatedStore } from './store/replicated-store.js';
export type { KeyProvider, WrappedKey, DataKey, KeyContext, WrappingKeyState } from './keys/key-provider.js';
export { LocalKeyProvider } from './keys/local-key-provider.js';
export {
  StreamingChunker,
  FixedChunker,
  createChunker,
  chunkBuffer,
  DEFAULT_CHUNKER,
  DEFAULT_RELATION_CHUNKER,
  PAGE_SIZE,
  validateChunkerParams,
  validateFixedChunker,
  type Chunker,
  type ChunkerParams,
  type Chunking,
  type FixedChunkerParams,
} from './chunking/chunker.js';
export { seal, open as openSealed, SEAL_OVERHEAD } from './crypto/aead.js';
export { ChunkCodec, chunkId, type FoundDelta, type Keys } from './format/chunk-codec.js';
export type { DeltaMember } from './format/delta-group.js';
export { encodeTrailer, decodeTrailer, type PackEntry } from './format/pack.js';
export { encodeIndex, decodeIndex, type IndexedPack } from './format/index-file.js';
export type { RepositoryConfig, KeyRecord } from './format/config.js';
export type { BackupManifest, BackupSummary, BackupStats, TreeEntry, EntryType, PostgresBackupInfo, PostgresBackupSummary } from './format/manifest.js';
export { summarise } from './repository/catalogue.js';
export { encodeManifest, decodeManifest, chunkIdsOf, chunkIdBytes } from './format/manifest.js';
export { CONFIG_KEY, PACK_PREFIX, INDEX_PREFIX, BACKUP_PREFIX, KEYS_PREFIX, packKey, expectedSha, backupLabel, isLockable } from './format/keys-layout.js';
export { openReplicas, type ReplicaOptions } from './repository/replicas.js';
export { Repository, DEFAULT_PACK_SIZE, type InitOptions, type LoadedBackup, type OpenOptions } from './repository/repository.js';
export { KeyRing, type DataKeyStatus } from './repository/key-ring.js';
export { SealedObjects, type ObjectKind, type SealedKind } from './repository/sealed-objects.js';
export { excludeMatcher, parseExcludeFile } from './backup/exclude.js';
export { backupFiles, backupTree, type BackupFilesOptions, type BackupProgress, type BackupResult, type TreeSource } from './backup/backup-files.js';
export { backupPostgres, type PostgresBackupOptions } from './postgres/backup-postgres.js';
export {
  walPush,
  WalStreamArchiver,
  fetchStreamedSegment,
  longestStreamed,
  walFetch,
  walPrefetch,
  walFetchScope,
  prefetcherRunning,
  segmentsAfter,
  defaultSpool,
  readWalRecord,
  fetchWalBytes,
  isArchived,
  listWalKeys,
  readControlSystemIdentifier,
  type WalPushOptions,
  type WalPushResult,
  type DurableWal,
  type WalStreamArchiverOptions,
  type StoredPrefix,
  type WalFetchOptions,
  type WalPrefetchOptions,
  SPOOL_WANTED,
  type WalFetchResult,
} from './postgres/wal.js';
export { walKey, legacyWalKey, parseWalKey, walStreamName, parseWalStreamName, WAL_FILE, WAL_SEGMENT, WAL_STREAM, type WalLocation, type WalRecord, type WalScope } from './format/wal-record.js';
export { restorePostgres, chooseBackup, backupToRestore, recoverySettings, parseTargetTime, timelineAncestry, RESTORE_MARKER, type RecoveryTarget, type RestoreCommandScope, type PostgresRestoreOptions, type PostgresRestoreResult } from './postgres/restore-postgres.js';
export { recoveryMode, restoreCommandStatus, neverArchived, commandLine, shellQuote, RESTORE_FATAL, RESTORE_FETCHED, RESTORE_NOT_ARCHIVED, type RecoveryMode } from './postgres/restore-command.js';
export { clusterIdentity } from './postgres/cluster-identity.js';
export { DEFAULT_STANZA, readStanza, listStanzas, ensureStanza, upgradeStanza, requireStanza } from './postgres/stanza.js';
export { validateStanzaName, type StanzaRecord, type StanzaEntry, type StanzaIdentity } from './format/stanza-record.js';
export { readSegmentHeader, type WalSegmentHeader } from './postgres/wal-header.js';
export { walTransactionIds, type WalTransactions } from './postgres/wal-records.js';
export { decodeReplicationMessage, encodeStandbyStatus, decodeStandbyStatus, encodeXLogData, encodeKeepalive, type ReplicationMessage, type StandbyStatus } from './postgres/replication-messages.js';
export { SegmentAssembler, type AssembledSegment } from './postgres/segment-assembler.js';
export { archiveReadyWal, type ArchivedReady, type WalReadyArchiverOptions, type WalReadyArchiverResult } from './postgres/wal-ready-archiver.js';
export { readWalFile, type WalFileIdentity } from './postgres/wal-file-read.js';
export { receiveWal, type WalReceiverOptions, type WalReceiverProgress, type WalReceiverResult } from './postgres/wal-receiver.js';
export { repositoryWalEnd, type RepositoryWalEnd } from './postgres/wal-end.js';
export { DEFAULT_ARCHIVE_TIMEOUT_MS, backupSegments } from './postgres/backup-postgres.js';
export { pageChecksum, badPages, BLCKSZ, RELSEG_BLOCKS } from './postgres/page-checksum.js';
export { parseLsn, formatLsn, pgdataDecision, relationFirstBlock, backupWalFiles, segmentName, segmentNumber } from './postgres/layout.js';
export type { WalkDecision, WalkOptions } from './backup/walk.js';
export type { PlanOptions } from './restore/plan.js';
export type { CheckedFile, ReadCheckOptions, ReadCheck, ReadCheckFactory, ReadCheckSpec } from './content/read-check.js';
export { ReadPacer, parseByteRate, parseByteSize } from './content/read-pacer.js';
export { restoreBackup, type RestoreOptions, type RestoreProgress, type RestoreResult } from './restore/restore.js';
export { checkEntryPaths } from './restore/target.js';
export { mirror, mirrorLag, storedObjectProblem, MIRROR_ORDER, type MirrorLag, type MirrorOptions, type MirrorProgress, type MirrorReport } from './mirror/mirror.js';
export { checkRepository, DEFAULT_CHECK_MEMORY, type CheckOptions, type CheckReport } from './check/check.js';
export { repairRepository, type IncompleteBackup, type RepairOptions, type RepairReport } from './check/repair.js';
export { DAMAGE_PREFIX, type DamageRecord } from './format/damage-record.js';
export { readDamage } from './repository/damage.js';
export { sha256Hex, toHex, bytesEqual, humanBytes } from './bytes.js';
export { decodeName, encodeName, fsPath, displayPath } from './names.js';
export { splitHostPort } from './host-port.js';
export { Lease, LeaseObserver, withLease, DEFAULT_LEASE_TTL_MS, defaultLeaseMargin, type LeaseHome, type LeaseOptions, type LeaseState, type MonotonicClock, type ObserverOptions } from './repository/leases.js';
export type { LeaseMode, LeaseRecord } from './format/lease-record.js';
export { readKeepMarks, setKeepMark } from './repository/keep-marks.js';
export type { KeepRecord } from './format/keep-record.js';
export { condemnedPacks } from './repository/condemned.js';
export { decideBackups, validatePolicy, pitrCutoff, backupTime, lineageOf, type RetentionPolicy, type RetentionRule, type BackupDecision, type DecideInput } from './retention/policy.js';
export { expire, walRanges, type ExpireOptions, type ExpireReport, type WalRange } from './postgres/expire.js';
export { decideWal, pitrAnchors, type WalFileDecision } from './postgres/wal-retention.js';
export { collectGarbage, DEFAULT_REPACK_DEAD_SHARE, DEFAULT_GC_MAX_WAIT_MS, type GcOptions, type GcReport } from './gc/gc.js';
export { deleteUnlessLocked, extendRetention, lockedObject, lockSpan, type LockedObject } from './repository/object-lock.js';
export { IdFilter } from './gc/id-filter.js';
export { verifyWalChain, type WalChainOptions, type WalChainReport, type WalGap, type BackupChain, type ChainState } from './postgres/wal-chain.js';
export { repositoryInfo, type RepositoryInfo, type InfoOptions, type LineageInfo, type WalTimelineInfo } from './postgres/info.js';
export { recordVerification, readVerifications } from './repository/verifications.js';
export { readDataIncrementally, type IncrementalReadOptions, type IncrementalReadReport } from './check/incremental-read.js';
export { readPackLedger, type PackLedger } from './repository/pack-ledger.js';
export type { VerificationRecord } from './format/verification-record.js';
export { mirrorBackups, type MirrorBackupsOptions, type MirrorBackupsReport } from './postgres/mirror-backups.js';
export { reencryptInitOptions, reencryptRepository, type ReencryptOptions, type ReencryptReport } from './postgres/reencrypt.js';
export { connectPostgres, type PostgresConnection } from './postgres/postgres-connection.js';
export { clientSettings as postgresClientSettings, conninfoSettings, keywordValueString, parseKeywordValue } from './postgres/connection-string.js';
export { AuditLog, readAuditTrail, type AuditEntry, type AuditTrailReport } from './repository/audit-trail.js';
export { AUDIT_PREFIX, type AuditRecord, type AuditValue } from './format/audit-record.js';
export type { AuditAnchor } from './format/manifest.js';
export { writeDurably } from './durable.js';
