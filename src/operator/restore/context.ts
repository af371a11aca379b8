/**
 * What one look of the SqliteRestore machine builds up (the next status, the actions, the Events,
 * when to look again), and the moves every phase makes with it: enter a phase, finish, fail (through
 * the rollback once InPlace has scaled down), wait for a step's Job. Pure.
 */
import {
  type Condition,
  describeWorkload,
  type RestorePhase,
  type SqliteRestoreStatus,
  type WorkloadRef,
} from "../../api/v1alpha1/index.ts";
import { isoSeconds } from "../../shared/format.ts";
import type { EventInput } from "../kube/events.ts";
import type { JobStep } from "../specs/restorejob.ts";
import { setCondition } from "../status.ts";
import { foreignJobMessage } from "./findings.ts";
import type { Action, JobState, Observed } from "./types.ts";

/** How soon a running Job or a scale is looked at again. */
export const POLL_MS = 2000;

export interface Ctx {
  obs: Observed;
  status: SqliteRestoreStatus;
  actions: Action[];
  events: EventInput[];
  requeueAfterMs?: number;
}

/** The workload recorded at admission: `workloadRef`, or `statefulSetName` (a status of an older operator). */
export function recordedWorkload(s: SqliteRestoreStatus): WorkloadRef {
  return s.workloadRef ?? { kind: "StatefulSet", name: s.statefulSetName ?? "" };
}

/** "StatefulSet app" or "Deployment app", as recorded at admission. */
export function workloadText(s: SqliteRestoreStatus): string {
  return describeWorkload(recordedWorkload(s));
}

export function condition(ctx: Ctx, c: Omit<Condition, "lastTransitionTime">): void {
  ctx.status.conditions = setCondition(ctx.status.conditions ?? [], c, ctx.obs.now);
}

export function enter(ctx: Ctx, phase: RestorePhase, message: string, warning = false): void {
  ctx.status.phase = phase;
  ctx.status.message = message;
  ctx.events.push({ type: warning ? "Warning" : "Normal", reason: phase, message });
  ctx.requeueAfterMs = 0;
}

export function finish(ctx: Ctx, phase: "Succeeded" | "Failed", reason: string, message: string): void {
  ctx.status.completedAt = isoSeconds(ctx.obs.now);
  condition(ctx, {
    type: "Complete",
    status: phase === "Succeeded" ? "True" : "False",
    reason,
    message,
    ...(ctx.obs.generation === undefined ? {} : { observedGeneration: ctx.obs.generation }),
  });
  enter(ctx, phase, message, phase === "Failed");
  delete ctx.requeueAfterMs;
}

/** Fails: before anything changed, at once; InPlace after ScalingDown, through rollback and ScalingUp. */
export function fail(ctx: Ctx, reason: string, message: string): void {
  const phase = ctx.status.phase ?? "Pending";
  if (phase === "Pending" || ctx.status.originalReplicas === undefined) {
    finish(ctx, "Failed", reason, message);
    return;
  }
  ctx.status.failure = { phase, reason, message };
  ctx.actions.push({ kind: "createJob", step: "rollback" });
  enter(ctx, "ScalingUp", `${message}; putting the original database back and scaling up`, true);
}

/** The step's Job once it has finished; else undefined, creating it if missing and looking again soon. */
export function finishedJob(ctx: Ctx, step: JobStep): JobState | undefined {
  const job = ctx.obs.jobs[step];
  if (job?.foreign) {
    fail(ctx, "JobExists", foreignJobMessage(ctx.obs.name, step));
    return undefined;
  }
  if (!job) ctx.actions.push({ kind: "createJob", step });
  if (!job || job.state === "Running") {
    ctx.requeueAfterMs = POLL_MS;
    return undefined;
  }
  return job;
}
