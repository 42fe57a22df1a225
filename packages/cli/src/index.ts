export { runCli, buildProgram, RunRecord, type CliIo } from './program.js';
export { EXIT_CODES, EXIT_DAMAGED_PAGES, EXIT_FILES_CHANGED, EXIT_INTERNAL, EXIT_REPAIR_INCOMPLETE, EXIT_USAGE } from './exit-codes.js';
