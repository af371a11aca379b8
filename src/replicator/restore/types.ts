/** What a restore is asked for (RestoreTarget, RestoreOptions), what it plans (RestorePlan) and what it reports. */

import type { Logger } from "../../shared/log.ts";
import type { ReplicaClient } from "../storage/client.ts";
import type { SnapshotInfo, WalSegmentInfo } from "../types.ts";

export const DEFAULT_RESTORE_PARALLELISM = 8;

export interface NamedClient {
  name: string;
  client: ReplicaClient;
}

export interface RestoreTarget {
  /** Only this destination (by name). */
  replica?: string;
  /** Only this generation. */
  generation?: string;
  /** Restore up to and including this WAL index. */
  index?: number;
  /** With `index`: stop at this byte offset of that index (a commit boundary), for an exact position. */
  offset?: number;
  /** Restore the transactions committed at or before this time. */
  timestamp?: Date;
}

/** How the timestamp was applied: Walship's commit times, or v0.3.13's object times (Litestream replicas). */
export type TimeRule = "none" | "commit-times" | "object-times";

export interface RestorePlan {
  replica: string;
  client: ReplicaClient;
  generation: string;
  snapshot: SnapshotInfo;
  /** Segments to apply, in order, from the snapshot's index on. */
  segments: WalSegmentInfo[];
  /** The last applied index is cut at this WAL offset (a commit boundary), when a timestamp falls inside it. */
  cut?: { index: number; offset: number };
  timeRule: TimeRule;
  /** Commit time of the last transaction restored, when known. */
  lastCommitTime?: Date;
  /**
   * Where in its index the snapshot was taken, for a snapshot of an earlier Walship build: its file
   * is a consistent state only with that index's WAL applied at least that far.
   */
  snapshotOffset?: number;
}

export interface RestoreProgress {
  bytes: number;
  segmentsDone: number;
  segmentsTotal: number;
  phase: "snapshot" | "wal" | "apply" | "verify";
}

export interface RestoreOptions extends RestoreTarget {
  outputPath: string;
  parallelism?: number;
  /** Move an existing database aside (to `<out>.pre-restore-<time>`) instead of refusing. */
  overwrite?: boolean;
  /** A query that must succeed and return at least one row on the restored file before it is renamed. */
  verifySql?: string;
  log?: Logger;
  onProgress?: (p: RestoreProgress) => void;
  signal?: AbortSignal;
}

export interface RestoreResult {
  outputPath: string;
  replica: string;
  generation: string;
  snapshotIndex: number;
  /** Position restored to: the last index applied and the byte offset reached in it. */
  index: number;
  offset: number;
  timeRule: TimeRule;
  lastCommitTime?: Date;
  bytes: number;
  segments: number;
  backupPath?: string;
}
