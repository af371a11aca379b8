/** The Db's options, defaults, metrics and commit records (db.ts re-exports them all). */

import type { Logger } from "../../shared/log.ts";

export const DEFAULT_MONITOR_INTERVAL_MS = 1000;
export const DEFAULT_CHECKPOINT_INTERVAL_MS = 60_000;
export const DEFAULT_MIN_CHECKPOINT_PAGE_COUNT = 1000;
export const DEFAULT_MAX_CHECKPOINT_PAGE_COUNT = 10_000;
export const DEFAULT_TRUNCATE_PAGE_COUNT = 500_000;
/** How long SQLite waits on a lock before answering busy. */
export const BUSY_TIMEOUT_MS = 1000;

export type CheckpointMode = "PASSIVE" | "RESTART" | "TRUNCATE";

export interface DbOptions {
  metaPath?: string;
  /**
   * How often the WAL is checked when no change notification arrives; 0 = no background monitoring.
   * Default DEFAULT_MONITOR_INTERVAL_MS (1 s).
   */
  monitorIntervalMs?: number;
  /**
   * Checkpoint when the database file has not changed for this long; 0 disables. Default
   * DEFAULT_CHECKPOINT_INTERVAL_MS (1 min).
   */
  checkpointIntervalMs?: number;
  /** PASSIVE checkpoint once the shadow WAL holds this many pages. Must be > 0. Default 1000. */
  minCheckpointPageCount?: number;
  /** RESTART checkpoint once the shadow WAL holds this many pages; 0 disables. Default 10000. */
  maxCheckpointPageCount?: number;
  /** TRUNCATE checkpoint once the real WAL holds this many pages; 0 disables. Default 500000. */
  truncatePageCount?: number;
  /** How long SQLite waits on a lock before answering busy (`busy-timeout`). Default BUSY_TIMEOUT_MS. */
  busyTimeoutMs?: number;
  /** Watch the WAL file for changes (inotify) so commits are seen within milliseconds. Default true. */
  watch?: boolean;
  /**
   * Syncs for changes start at most this often (counted from the previous one's start), to batch a
   * steady stream of commits; a destination's tick ends the wait (catchUp). Default
   * the monitor interval (see watch.ts).
   */
  coalesceMs?: number;
  log?: Logger;
  /**
   * Test seams (named so nothing else uses them): `afterVerify` runs between the WAL check and the
   * copy; `afterBackfill` in our RESTART/TRUNCATE checkpoint, between the back-fill and our write
   * that restarts the WAL (when no lock of ours holds the application off); `beforeBackfill` in every
   * checkpoint, awaited before the back-fill done without the write lock starts (to hold a sync inside
   * one, or to commit from the application during it); `markReleased` in every checkpoint, between
   * the end of our read transaction and the next (to restart the WAL from the application there).
   */
  testHooks?: {
    afterVerify?: () => void;
    afterBackfill?: () => void;
    beforeBackfill?: () => Promise<void>;
    markReleased?: () => void;
  };
}

/** A commit observed in the WAL: where its last frame ends, and when we saw it. */
export interface CommitRecord {
  generation: string;
  index: number;
  /** Shadow offset just after the commit frame. */
  end: number;
  /** Milliseconds since the epoch at which the commit was observed. */
  time: number;
}

export interface DbMetrics {
  dbSize: number;
  walSize: number;
  shadowIndex: number;
  shadowSize: number;
  totalWalBytes: number;
  syncCount: number;
  syncErrorCount: number;
  syncSeconds: number;
  checkpoints: Record<CheckpointMode, { count: number; errors: number; seconds: number }>;
}

/**
 * Whether the Db's checkpoints are failing: failures since the last one that succeeded (0 once one
 * succeeds), the newest failure, and the last success. A checkpoint that could not write everything
 * back (a reader in the way) is not a failure; one that threw is.
 */
export interface CheckpointHealth {
  consecutiveFailures: number;
  lastError?: string;
  lastErrorAt?: Date;
  lastSuccessAt?: Date;
}
