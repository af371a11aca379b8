/** A Replica's options and defaults, its status and its metrics (replica.ts re-exports them). */

import type { Logger } from "../../shared/log.ts";
import type { Fence, FencedBy, LeaseState } from "../fence.ts";
import type { Pos } from "../types.ts";
import type { ValidationResult } from "../validate.ts";

export const DEFAULT_SYNC_INTERVAL_MS = 1000;
export const DEFAULT_RETENTION_MS = 24 * 3600_000;
export const DEFAULT_RETENTION_CHECK_INTERVAL_MS = 3600_000;

export interface ReplicaOptions {
  name: string;
  /** Ship the shadow WAL this often. Default DEFAULT_SYNC_INTERVAL_MS (1 s). */
  syncIntervalMs?: number;
  /** Take a snapshot this often; undefined = only when a generation has none (and for retention). */
  snapshotIntervalMs?: number;
  /** Keep snapshots (and the WAL after them) this long; 0 disables retention. Default 24 h. */
  retentionMs?: number;
  /** Run retention this often; 0 = never. Default DEFAULT_RETENTION_CHECK_INTERVAL_MS (1 h). */
  retentionCheckIntervalMs?: number;
  /** Validate the destination this often (restore at a pinned position and compare); undefined = off. */
  validationIntervalMs?: number;
  /**
   * The destination's single-writer claim (fence.ts): while another writer holds it, the loops
   * wait and nothing is written. Undefined = no claim (claim-ttl 0).
   */
  fence?: Fence;
  log?: Logger;
}

export interface ReplicaStatus {
  name: string;
  type: string;
  location: string;
  pos?: Pos;
  lastSyncAt?: Date;
  lastSnapshotAt?: Date;
  lastSnapshotIndex?: number;
  lastError?: string;
  lastErrorAt?: Date;
  /** When the newest commit now durable on this destination was seen (the newest restorable time). */
  lastDurableCommitAt?: Date;
  /** The last validation's outcome, when validation is on. */
  lastValidation?: ValidationResult;
  /** Observed commits not yet durable on this destination. */
  pendingCommits: number;
  /** Time of the oldest observed commit not yet durable (lag starts here). */
  oldestPendingAt?: Date;
  /** The last snapshot was not started for lack of local space (guardrails.ts); cleared by the next one. */
  snapshotRefused?: { message: string; at: Date };
  /** Set while another writer holds the destination's claim: nothing is written there. */
  fencedBy?: FencedBy;
  /** In a cluster: the destination's Lease as last seen (fence.ts). */
  lease?: LeaseState;
}

export interface ReplicaMetrics {
  walBytes: number;
  syncCount: number;
  syncErrorCount: number;
  snapshotCount: number;
  validationOk: number;
  /** Mismatches and validations that could not complete. */
  validationError: number;
  /** Snapshots not started because what they write locally would not fit. */
  snapshotRefusedCount: number;
}
