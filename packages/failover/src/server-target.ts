/** How to reach a server for one short connection (no driver types: public signatures take it). */
export interface ServerConnection {
  /** A connection URI or libpq keyword/value string (the password never in it when logged). */
  conninfo: string;
  /** The role's password, when no ~/.pgpass has it (never logged). */
  password?: string;
  /** Gives up on connecting after this many ms. */
  connectTimeoutMs: number;
  /**
   * Gives up on each query after this many ms. Left out for work that takes
   * as long as it takes and has its own limit (promotion, CHECKPOINT).
   */
  queryTimeoutMs?: number;
  /** Shown in pg_stat_activity. */
  applicationName: string;
}
