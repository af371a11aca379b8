/**
 * What each phase after Pending does on one look of the SqliteRestore machine (machine.ts has the
 * order and the rules). Pure: each reads `ctx.obs` and writes the next status, actions and Events
 * into `ctx`.
 */
import type { SqliteRestoreSpec } from "../../api/v1alpha1/index.ts";
import { claimNotOurs } from "./admit.ts";
import {
  type Ctx,
  enter,
  fail,
  finish,
  finishedJob,
  POLL_MS,
  recordedWorkload,
  workloadText,
} from "./context.ts";
import { checkResult, classifyJobFailure, foreignJobMessage } from "./findings.ts";
import { describePlan, parseRestoreResult } from "./result.ts";
import type { Observed } from "./types.ts";

export type PhaseStep = (ctx: Ctx, spec: SqliteRestoreSpec, dbPath: string | undefined) => void;

/** Planning: the plan Job checks the target can be restored; then InPlace scales down, NewClaim creates its claim. */
export function planning(ctx: Ctx, spec: SqliteRestoreSpec): void {
  const { obs } = ctx;
  const s = ctx.status;
  const job = finishedJob(ctx, "plan");
  if (!job) return;
  if (job.state === "Failed") {
    const f = classifyJobFailure(spec, "plan", job, "PlanFailed");
    fail(ctx, f.reason, `${f.message}; nothing was changed`);
    return;
  }
  const plan = describePlan(job.message ?? "");
  if (!obs.workload) {
    fail(ctx, notFound(s), `${workloadText(s)} is gone; nothing was changed`);
    return;
  }
  if (spec.mode === "NewClaim") {
    if (claimNotOurs(ctx, spec)) return;
    ctx.actions.push({ kind: "createClaim" });
    enter(ctx, "Restoring", `${plan}; restoring ${s.target} into new claim ${s.claimName}`);
    return;
  }
  // Recorded now, before the scale: status is written before any action is taken.
  s.originalReplicas = obs.workload.spec?.replicas ?? 1;
  ctx.actions.push({ kind: "scale", replicas: 0 });
  enter(ctx, "ScalingDown", `${plan}; scaling ${workloadText(s)} from ${s.originalReplicas} to 0`);
}

/** ScalingDown: waits for the StatefulSet's pods to be gone, then runs the restore Job. */
export function scalingDown(ctx: Ctx): void {
  const { obs } = ctx;
  const s = ctx.status;
  if (!obs.workload) {
    fail(ctx, notFound(s), `${workloadText(s)} is gone`);
    return;
  }
  if ((obs.workload.spec?.replicas ?? 1) !== 0) ctx.actions.push({ kind: "scale", replicas: 0 });
  if (obs.podsRemaining > 0) {
    ctx.requeueAfterMs = POLL_MS;
    return;
  }
  ctx.actions.push({ kind: "createJob", step: "restore" });
  enter(ctx, "Restoring", `restoring ${s.target} onto claim ${s.claimName}`);
}

/** Restoring: waits for the restore Job (NewClaim: for its claim first) and reads the position it reached. */
export function restoring(ctx: Ctx, spec: SqliteRestoreSpec): void {
  const { obs } = ctx;
  const s = ctx.status;
  if (spec.mode === "NewClaim") {
    if (claimNotOurs(ctx, spec)) return;
    if (obs.newClaim !== "ours") {
      // Created with the plan's success; not seen yet (or deleted since): create it, look again.
      ctx.actions.push({ kind: "createClaim" });
      ctx.requeueAfterMs = POLL_MS;
      return;
    }
  }
  const job = finishedJob(ctx, "restore");
  if (!job) return;
  if (job.state === "Failed") {
    const f = classifyJobFailure(spec, "restore", job, "RestoreFailed");
    fail(ctx, f.reason, f.message);
    return;
  }
  // The CLI restored to a staged file, checked it (integrity_check) and honoured the target; the
  // position comes from its log (the termination message) when the runtime reports one.
  const result = parseRestoreResult(job.message ?? "");
  if (result) s.restored = result;
  enter(
    ctx,
    "Verifying",
    result
      ? `restored to ${result.position}; integrity_check passed; checking the target`
      : "restored; integrity_check passed; the Job reported no position",
  );
}

/** Verifying: checks the reached position against the target; NewClaim ends here, InPlace swaps. */
export function verifying(ctx: Ctx, spec: SqliteRestoreSpec, dbPath: string | undefined): void {
  const s = ctx.status;
  const problem = s.restored ? checkResult(spec, s.restored) : undefined;
  if (problem) {
    fail(ctx, "VerificationFailed", problem);
    return;
  }
  if (spec.mode === "NewClaim") {
    finish(
      ctx,
      "Succeeded",
      "Restored",
      `restored to ${s.restored?.position ?? s.target} into claim ${s.claimName}`,
    );
    return;
  }
  const scaled = scaledUp(ctx.obs);
  if (scaled) {
    fail(ctx, "ScaledUp", scaled);
    return;
  }
  ctx.actions.push({ kind: "createJob", step: "swap" });
  enter(
    ctx,
    "Swapping",
    spec.previousDatabase === "Delete"
      ? `replacing ${dbPath}; the previous database is deleted once the restored file is in place`
      : `replacing ${dbPath}; the previous database is kept as ${s.backupPath}`,
  );
}

/** Swapping: runs the swap Job, unless the StatefulSet was scaled up meanwhile; then scales back up. */
export function swapping(ctx: Ctx, spec: SqliteRestoreSpec): void {
  const { obs } = ctx;
  const s = ctx.status;
  // The swap moves files under the app's feet: not once a pod may run again (the Job is created
  // when Verifying passes; a resumed operator may find it not created yet).
  const scaled = obs.jobs.swap ? undefined : scaledUp(obs);
  if (scaled) {
    fail(ctx, "ScaledUp", scaled);
    return;
  }
  const job = finishedJob(ctx, "swap");
  if (!job) return;
  if (job.state === "Failed") {
    const f = classifyJobFailure(spec, "swap", job, "SwapFailed");
    fail(ctx, f.reason, f.message);
    return;
  }
  ctx.actions.push({ kind: "scale", replicas: s.originalReplicas ?? 1 });
  enter(ctx, "ScalingUp", `swapped; scaling ${workloadText(s)} back to ${s.originalReplicas}`);
}

/** ScalingUp: after a failure, the rollback Job first; then scales back to the recorded count and ends. */
export function scalingUp(ctx: Ctx, spec: SqliteRestoreSpec): void {
  const { obs } = ctx;
  const s = ctx.status;
  if (s.failure && obs.jobs.rollback?.foreign) {
    // Not reused, not waited for: scale back up and say where the previous database may be.
    if (!s.message?.includes("not reused")) {
      s.message = `${s.failure.message}; ${foreignJobMessage(obs.name, "rollback")}: the previous database may be at ${s.backupPath}`;
    }
  } else if (s.failure) {
    const job = finishedJob(ctx, "rollback");
    if (!job) return;
    if (job.state === "Failed" && !s.message?.includes("rollback Job")) {
      const f = classifyJobFailure(spec, "rollback", job, "RollbackFailed");
      s.message = `${s.failure.message}; ${f.message}: the previous database may be at ${s.backupPath}`;
    }
  }
  const want = s.originalReplicas ?? 1;
  if (!obs.workload) {
    if (s.failure) finish(ctx, "Failed", s.failure.reason, s.message ?? s.failure.message);
    else finish(ctx, "Failed", notFound(s), `${workloadText(s)} is gone`);
    return;
  }
  if ((obs.workload.spec?.replicas ?? 1) !== want) ctx.actions.push({ kind: "scale", replicas: want });
  const ready = obs.workload.status?.readyReplicas ?? 0;
  if (ready < want) {
    ctx.requeueAfterMs = POLL_MS;
    return;
  }
  if (s.failure) finish(ctx, "Failed", s.failure.reason, s.message ?? s.failure.message);
  else
    finish(
      ctx,
      "Succeeded",
      "Restored",
      `restored to ${s.restored?.position ?? s.target}; ${want} pod(s) ready; ${
        spec.previousDatabase === "Delete"
          ? `previous database deleted (previousDatabase: Delete)`
          : `previous database kept as ${s.backupPath}`
      }`,
    );
}

/**
 * InPlace, before the swap: why the database must not be swapped now, when the StatefulSet was
 * scaled up again (by hand, a GitOps tool, an autoscaler) or one of its pods is back; else undefined.
 */
export function scaledUp(obs: Observed): string | undefined {
  const sts = obs.workload;
  if (!sts) return `${workloadText(obs.status)} is gone`;
  const want = sts.spec?.replicas ?? 1;
  if (want === 0 && obs.podsRemaining === 0) return undefined;
  return (
    `${recordedWorkload(obs.status).kind} ${sts.metadata?.name} was scaled to ${want} (${obs.podsRemaining} pod(s)) while the ` +
    "restore ran; the database was not swapped"
  );
}

/** The reason when the workload is gone: StatefulSetNotFound or DeploymentNotFound. */
function notFound(s: Parameters<typeof recordedWorkload>[0]): string {
  return `${recordedWorkload(s).kind}NotFound`;
}
