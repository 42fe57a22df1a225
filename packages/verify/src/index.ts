/**
 * @coffer/verify — restore drills. A drill restores a backup into a fresh
 * sandbox directory, then reads every restored file back and re-derives its
 * chunk ids with the repository's own chunker and id key: the bytes on disk,
 * not only the bytes in flight, must be the bytes that were backed up.
 */
export { drillRestore, type DrillOptions, type DrillReport } from './drill.js';
