/** What the SqliteRestore machine observes and decides (machine.ts). */
import type { RestorePhase, SqliteRestoreStatus } from "../../api/v1alpha1/index.ts";
import type { EventInput } from "../kube/events.ts";
import type { JobStep } from "../specs/restorejob.ts";
import type { WorkloadObject } from "../specs/workload.ts";

export interface JobState {
  state: "Running" | "Succeeded" | "Failed";
  /** The restore container's termination message (its last log lines), if any. */
  message?: string;
  /** The reason of the Job's Failed condition (`DeadlineExceeded`, `BackoffLimitExceeded`, ...). */
  reason?: string;
  /** A pod of the Job was killed out of memory (its container's memory limit, when it had one). */
  oomKilled?: { limit?: string };
  /**
   * A Job of that name exists but this SqliteRestore did not create it (no controller reference to
   * its uid: left over from an earlier SqliteRestore of the same name, or made by someone else). It
   * is never reused: its state says nothing about this restore.
   */
  foreign?: boolean;
}

export interface OtherRestore {
  name: string;
  phase?: RestorePhase;
  creationTimestamp: string;
}

export interface Observed {
  now: Date;
  name: string;
  creationTimestamp: string;
  generation?: number;
  /** The raw spec (validated here). */
  spec: unknown;
  status: SqliteRestoreStatus;
  /** The SqliteReplica's raw spec; undefined when it does not exist. */
  replica?: unknown;
  /** The SqliteReplica's workload (StatefulSet or Deployment); undefined when it does not exist. */
  workload?: WorkloadObject;
  /** How many pods of the workload still exist. */
  podsRemaining: number;
  jobs: Partial<Record<JobStep, JobState>>;
  /** The other SqliteRestores naming the same SqliteReplica. */
  others: OtherRestore[];
  /**
   * NewClaim: the claim `spec.newClaim.name` as it is now: missing, created by this SqliteRestore
   * (its `walship.dev/sqliterestore-uid` annotation is this restore's uid), or anything else.
   */
  newClaim?: "missing" | "ours" | "foreign";
}

export type Action =
  | { kind: "scale"; replicas: number }
  | { kind: "createJob"; step: JobStep }
  | { kind: "createClaim" };

export interface Decision {
  status: SqliteRestoreStatus;
  actions: Action[];
  events: EventInput[];
  /** Look again after this long (ms) even without a watch event. */
  requeueAfterMs?: number;
}

export const FINAL_PHASES: ReadonlySet<RestorePhase> = new Set(["Succeeded", "Failed"]);
