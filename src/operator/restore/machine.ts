/**
 * The SqliteRestore state machine, pure: from what the API server holds now (the SqliteRestore and
 * its recorded status, the SqliteReplica, the StatefulSet, its remaining pods, the restore's Jobs,
 * the other SqliteRestores of the same SqliteReplica) it decides the next status and the actions to
 * take. Nothing is kept in memory: a restarted operator reads the recorded phase and goes on.
 *
 * InPlace:  Pending -> Planning -> ScalingDown -> Restoring -> Verifying -> Swapping -> ScalingUp -> Succeeded
 * NewClaim: Pending -> Planning -> Restoring -> Verifying -> Succeeded
 * Planning runs `walship restore -dry-run` in a Job: a target that cannot be restored (before the
 * recoverability window, no backup, an unreachable bucket) fails there, before anything changed.
 * Any failure after ScalingDown records `status.failure`, runs the rollback Job (the original file
 * back, the staged file removed) in ScalingUp, scales back to the recorded count, and ends Failed.
 * Before anything changed (Pending, Planning) a failure ends Failed at once. Every Job has the
 * spec's timeout as activeDeadlineSeconds; a Job past it fails the restore with `DeadlineExceeded`.
 * NewClaim never writes into a claim it did not create: a claim of that name that exists and is not
 * this restore's fails it (`ClaimExists`) before anything is written, and the restore Job is created
 * only once the claim is observed as this restore's. A Job of a step's name that this restore did
 * not create is never reused: the restore fails `JobExists` (through the rollback once InPlace has
 * scaled down). InPlace checks again before the swap that the StatefulSet is still at 0 with no pod:
 * a scale-up meanwhile fails the restore `ScaledUp` (rollback, scale back) instead of swapping.
 */
import {
  type Condition,
  describeIssues,
  type RestorePhase,
  SqliteReplicaSpec,
  SqliteRestoreSpec,
  type SqliteRestoreStatus,
} from "../../api/v1alpha1/index.ts";
import type { EventInput } from "../kube/events.ts";
import type { StatefulSet } from "../kube/types.ts";
import { type JobStep, jobDeadlineSeconds, restoreJobName } from "../specs/restorejob.ts";
import { setCondition } from "../status.ts";
import { describePlan, parseRestoreResult, type RestoreResult } from "./result.ts";

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
  statefulSet?: StatefulSet;
  /** How many pods of the StatefulSet still exist. */
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
const POLL_MS = 2000;

function iso(d: Date): string {
  return d.toISOString().replace(/\.\d{3}Z$/, "Z");
}

function hex8(n: number): string {
  return n.toString(16).padStart(8, "0");
}

/** The target as the Target column shows it. */
export function describeTarget(spec: SqliteRestoreSpec): string {
  const t = spec.target;
  if (t?.timestamp) return t.timestamp;
  if (t?.generation) return t.index === undefined ? t.generation : `${t.generation}/${hex8(t.index)}`;
  return "latest";
}

/** The backup name of the previous database: `<db>.pre-restore-<restore name>`. */
export function backupPathFor(dbPath: string, restoreName: string): string {
  return `${dbPath}.pre-restore-${restoreName}`;
}

/** The staged restore beside the database: `<db>.restore-<restore name>`. */
export function stagingPathFor(dbPath: string, restoreName: string): string {
  return `${dbPath}.restore-${restoreName}`;
}

/**
 * The claim holding `volumeName` for `pod` of the StatefulSet: a volumeClaimTemplate's
 * `<template>-<sts>-<ordinal>` or a pod volume's persistentVolumeClaim; undefined otherwise.
 */
export function claimFor(sts: StatefulSet, volumeName: string, pod: string): string | undefined {
  if ((sts.spec?.volumeClaimTemplates ?? []).some((t) => t.metadata?.name === volumeName)) {
    return `${volumeName}-${pod}`;
  }
  const v = (sts.spec?.template?.spec?.volumes ?? []).find((x) => x.name === volumeName);
  return v?.persistentVolumeClaim?.claimName;
}

/** True when `mine` is the restore allowed to run among the non-final ones of its SqliteReplica. */
function blocker(obs: Observed): OtherRestore | undefined {
  const active = obs.others.filter((o) => !FINAL_PHASES.has(o.phase ?? "Pending"));
  // One already past Pending holds the SqliteReplica; else the oldest Pending one (then by name).
  const started = active.find((o) => o.phase !== undefined && o.phase !== "Pending");
  if (started) return started;
  return active.find(
    (o) =>
      o.creationTimestamp < obs.creationTimestamp ||
      (o.creationTimestamp === obs.creationTimestamp && o.name < obs.name),
  );
}

interface Ctx {
  obs: Observed;
  status: SqliteRestoreStatus;
  actions: Action[];
  events: EventInput[];
  requeueAfterMs?: number;
}

function condition(ctx: Ctx, c: Omit<Condition, "lastTransitionTime">): void {
  ctx.status.conditions = setCondition(ctx.status.conditions ?? [], c, ctx.obs.now);
}

function enter(ctx: Ctx, phase: RestorePhase, message: string, warning = false): void {
  ctx.status.phase = phase;
  ctx.status.message = message;
  ctx.events.push({ type: warning ? "Warning" : "Normal", reason: phase, message });
  ctx.requeueAfterMs = 0;
}

function finish(ctx: Ctx, phase: "Succeeded" | "Failed", reason: string, message: string): void {
  ctx.status.completedAt = iso(ctx.obs.now);
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
function fail(ctx: Ctx, reason: string, message: string): void {
  const phase = ctx.status.phase ?? "Pending";
  if (phase === "Pending" || ctx.status.originalReplicas === undefined) {
    finish(ctx, "Failed", reason, message);
    return;
  }
  ctx.status.failure = { phase, reason, message };
  ctx.actions.push({ kind: "createJob", step: "rollback" });
  enter(ctx, "ScalingUp", `${message}; putting the original database back and scaling up`, true);
}

/** Checks the reported position against the target; a problem, or undefined when it matches. */
export function checkResult(spec: SqliteRestoreSpec, r: RestoreResult): string | undefined {
  const t = spec.target;
  if (t?.timestamp) {
    if (!r.lastCommitTime) return "the restore reported no commit time to check the target time against";
    if (Date.parse(r.lastCommitTime) > Date.parse(t.timestamp))
      return `the restore reached a commit at ${r.lastCommitTime}, after the target ${t.timestamp}`;
  }
  if (t?.generation && r.generation !== t.generation)
    return `the restore used generation ${r.generation}, not ${t.generation}`;
  if (t?.index !== undefined && r.index > t.index)
    return `the restore reached index ${hex8(r.index)}, past the target ${hex8(t.index)}`;
  if (spec.destination && r.destination && r.destination !== spec.destination)
    return `the restore used destination ${r.destination}, not ${spec.destination}`;
  return undefined;
}

function jobFailure(step: JobStep, job: JobState): string {
  const last = (job.message ?? "").trim().split("\n").filter(Boolean).pop() ?? "";
  let text = last;
  try {
    const o = JSON.parse(last) as { msg?: string; err?: unknown; error?: unknown };
    text = String(o.err ?? o.error ?? o.msg ?? last);
  } catch {
    // plain text
  }
  return `the ${step} Job failed${text ? `: ${text}` : ""}`;
}

/**
 * Why a failed Job failed, as a condition reason and message: past the spec's timeout
 * (`DeadlineExceeded`), a pod killed out of memory (`OutOfMemory`, naming the limit), a check of the restored file that did not pass (`VerificationFailed`: the
 * CLI's integrity_check or -verify-sql, which exit with WALSHIP_ERR_INTEGRITY), else `otherwise`.
 */
function classifyJobFailure(
  spec: SqliteRestoreSpec,
  step: JobStep,
  job: JobState,
  otherwise: string,
): { reason: string; message: string } {
  if (job.reason === "DeadlineExceeded") {
    return {
      reason: "DeadlineExceeded",
      message: `the ${step} Job did not finish within spec.timeout ${spec.timeout} (activeDeadlineSeconds ${jobDeadlineSeconds(spec)})`,
    };
  }
  if (job.oomKilled) {
    const limit = job.oomKilled.limit ? `limit ${job.oomKilled.limit}` : "no limit";
    return {
      reason: "OutOfMemory",
      message:
        `the ${step} Job ran out of memory (${limit}); raise this SqliteRestore's ` +
        "spec.resources.limits.memory or the SqliteReplica's spec.restoreResources.limits.memory",
    };
  }
  const message = jobFailure(step, job);
  if (step === "restore" && /\[WALSHIP_ERR_INTEGRITY\]/.test(job.message ?? "")) {
    return { reason: "VerificationFailed", message };
  }
  return { reason: otherwise, message };
}

function foreignJobMessage(ctx: Ctx, step: JobStep): string {
  return (
    `Job ${restoreJobName(ctx.obs.name, step)} exists and was not created by this SqliteRestore (left ` +
    "over from an earlier one of the same name?); it is not reused: delete it and create the SqliteRestore again"
  );
}

/** The step's Job once it has finished; else undefined, creating it if missing and looking again soon. */
function finishedJob(ctx: Ctx, step: JobStep): JobState | undefined {
  const job = ctx.obs.jobs[step];
  if (job?.foreign) {
    fail(ctx, "JobExists", foreignJobMessage(ctx, step));
    return undefined;
  }
  if (!job) ctx.actions.push({ kind: "createJob", step });
  if (!job || job.state === "Running") {
    ctx.requeueAfterMs = POLL_MS;
    return undefined;
  }
  return job;
}

/** One step of the machine. */
export function decide(obs: Observed): Decision {
  const ctx: Ctx = { obs, status: structuredClone(obs.status), actions: [], events: [] };
  const s = ctx.status;
  if (obs.generation !== undefined) s.observedGeneration = obs.generation;
  const phase = s.phase ?? "Pending";
  if (FINAL_PHASES.has(phase)) return { status: s, actions: [], events: [] };

  const parsed = SqliteRestoreSpec.safeParse(obs.spec);
  if (!parsed.success) {
    const { field, message } = describeIssues("spec", parsed.error);
    fail(ctx, "InvalidSpec", `${field}: ${message}`);
    return done(ctx);
  }
  const spec = parsed.data;
  s.target ??= describeTarget(spec);

  if (phase === "Pending") {
    pending(ctx, spec);
    return done(ctx);
  }
  const rep = SqliteReplicaSpec.safeParse(obs.replica);
  const dbPath = rep.success ? rep.data.database.path : undefined;

  switch (phase) {
    case "Planning": {
      const job = finishedJob(ctx, "plan");
      if (!job) break;
      if (job.state === "Failed") {
        const f = classifyJobFailure(spec, "plan", job, "PlanFailed");
        fail(ctx, f.reason, `${f.message}; nothing was changed`);
        break;
      }
      const plan = describePlan(job.message ?? "");
      if (!obs.statefulSet) {
        fail(ctx, "StatefulSetNotFound", `StatefulSet ${s.statefulSetName} is gone; nothing was changed`);
        break;
      }
      if (spec.mode === "NewClaim") {
        if (claimNotOurs(ctx, spec)) break;
        ctx.actions.push({ kind: "createClaim" });
        enter(ctx, "Restoring", `${plan}; restoring ${s.target} into new claim ${s.claimName}`);
        break;
      }
      // Recorded now, before the scale: status is written before any action is taken.
      s.originalReplicas = obs.statefulSet.spec?.replicas ?? 1;
      ctx.actions.push({ kind: "scale", replicas: 0 });
      enter(
        ctx,
        "ScalingDown",
        `${plan}; scaling StatefulSet ${s.statefulSetName} from ${s.originalReplicas} to 0`,
      );
      break;
    }
    case "ScalingDown": {
      if (!obs.statefulSet) {
        fail(ctx, "StatefulSetNotFound", `StatefulSet ${s.statefulSetName} is gone`);
        break;
      }
      if ((obs.statefulSet.spec?.replicas ?? 1) !== 0) ctx.actions.push({ kind: "scale", replicas: 0 });
      if (obs.podsRemaining > 0) {
        ctx.requeueAfterMs = POLL_MS;
        break;
      }
      ctx.actions.push({ kind: "createJob", step: "restore" });
      enter(ctx, "Restoring", `restoring ${s.target} onto claim ${s.claimName}`);
      break;
    }
    case "Restoring": {
      if (spec.mode === "NewClaim") {
        if (claimNotOurs(ctx, spec)) break;
        if (obs.newClaim !== "ours") {
          // Created with the plan's success; not seen yet (or deleted since): create it, look again.
          ctx.actions.push({ kind: "createClaim" });
          ctx.requeueAfterMs = POLL_MS;
          break;
        }
      }
      const job = finishedJob(ctx, "restore");
      if (!job) break;
      if (job.state === "Failed") {
        const f = classifyJobFailure(spec, "restore", job, "RestoreFailed");
        fail(ctx, f.reason, f.message);
        break;
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
      break;
    }
    case "Verifying": {
      const problem = s.restored ? checkResult(spec, s.restored) : undefined;
      if (problem) {
        fail(ctx, "VerificationFailed", problem);
        break;
      }
      if (spec.mode === "NewClaim") {
        finish(
          ctx,
          "Succeeded",
          "Restored",
          `restored to ${s.restored?.position ?? s.target} into claim ${s.claimName}`,
        );
        break;
      }
      const scaled = scaledUp(obs);
      if (scaled) {
        fail(ctx, "ScaledUp", scaled);
        break;
      }
      ctx.actions.push({ kind: "createJob", step: "swap" });
      enter(
        ctx,
        "Swapping",
        spec.previousDatabase === "Delete"
          ? `replacing ${dbPath}; the previous database is deleted once the restored file is in place`
          : `replacing ${dbPath}; the previous database is kept as ${s.backupPath}`,
      );
      break;
    }
    case "Swapping": {
      // The swap moves files under the app's feet: not once a pod may run again (the Job is created
      // when Verifying passes; a resumed operator may find it not created yet).
      const scaled = obs.jobs.swap ? undefined : scaledUp(obs);
      if (scaled) {
        fail(ctx, "ScaledUp", scaled);
        break;
      }
      const job = finishedJob(ctx, "swap");
      if (!job) break;
      if (job.state === "Failed") {
        const f = classifyJobFailure(spec, "swap", job, "SwapFailed");
        fail(ctx, f.reason, f.message);
        break;
      }
      ctx.actions.push({ kind: "scale", replicas: s.originalReplicas ?? 1 });
      enter(
        ctx,
        "ScalingUp",
        `swapped; scaling StatefulSet ${s.statefulSetName} back to ${s.originalReplicas}`,
      );
      break;
    }
    case "ScalingUp": {
      if (s.failure && obs.jobs.rollback?.foreign) {
        // Not reused, not waited for: scale back up and say where the previous database may be.
        if (!s.message?.includes("not reused")) {
          s.message = `${s.failure.message}; ${foreignJobMessage(ctx, "rollback")}: the previous database may be at ${s.backupPath}`;
        }
      } else if (s.failure) {
        const job = finishedJob(ctx, "rollback");
        if (!job) break;
        if (job.state === "Failed" && !s.message?.includes("rollback Job")) {
          const f = classifyJobFailure(spec, "rollback", job, "RollbackFailed");
          s.message = `${s.failure.message}; ${f.message}: the previous database may be at ${s.backupPath}`;
        }
      }
      const want = s.originalReplicas ?? 1;
      if (!obs.statefulSet) {
        if (s.failure) finish(ctx, "Failed", s.failure.reason, s.message ?? s.failure.message);
        else finish(ctx, "Failed", "StatefulSetNotFound", `StatefulSet ${s.statefulSetName} is gone`);
        break;
      }
      if ((obs.statefulSet.spec?.replicas ?? 1) !== want) ctx.actions.push({ kind: "scale", replicas: want });
      const ready = obs.statefulSet.status?.readyReplicas ?? 0;
      if (ready < want) {
        ctx.requeueAfterMs = POLL_MS;
        break;
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
      break;
    }
    default:
      break;
  }
  return done(ctx);
}

/**
 * InPlace, before the swap: why the database must not be swapped now, when the StatefulSet was
 * scaled up again (by hand, a GitOps tool, an autoscaler) or one of its pods is back; else undefined.
 */
export function scaledUp(obs: Observed): string | undefined {
  const sts = obs.statefulSet;
  if (!sts) return `StatefulSet ${obs.status.statefulSetName} is gone`;
  const want = sts.spec?.replicas ?? 1;
  if (want === 0 && obs.podsRemaining === 0) return undefined;
  return (
    `StatefulSet ${sts.metadata?.name} was scaled to ${want} (${obs.podsRemaining} pod(s)) while the ` +
    "restore ran; the database was not swapped"
  );
}

/** NewClaim: fails (nothing written yet) when the claim exists and is not this restore's. */
function claimNotOurs(ctx: Ctx, spec: SqliteRestoreSpec): boolean {
  if (ctx.obs.newClaim !== "foreign") return false;
  const name = spec.newClaim?.name ?? "";
  finish(
    ctx,
    "Failed",
    "ClaimExists",
    `spec.newClaim.name: PersistentVolumeClaim ${name} already exists and was not created by this ` +
      "SqliteRestore; nothing was written to it (name a new claim, or delete that one)",
  );
  return true;
}

function pending(ctx: Ctx, spec: SqliteRestoreSpec): void {
  const { obs, status: s } = ctx;
  const other = blocker(obs);
  if (other) {
    const message = `SqliteRestore ${other.name} is already restoring SqliteReplica ${spec.sqliteReplicaName}; one restore at a time`;
    condition(ctx, { type: "Admitted", status: "False", reason: "RestoreInProgress", message });
    finish(ctx, "Failed", "RestoreInProgress", message);
    return;
  }
  if (obs.replica === undefined) {
    finish(
      ctx,
      "Failed",
      "SqliteReplicaNotFound",
      `spec.sqliteReplicaName: SqliteReplica ${spec.sqliteReplicaName} not found`,
    );
    return;
  }
  const rep = SqliteReplicaSpec.safeParse(obs.replica);
  if (!rep.success) {
    const { field, message } = describeIssues("spec", rep.error);
    finish(
      ctx,
      "Failed",
      "InvalidSqliteReplica",
      `SqliteReplica ${spec.sqliteReplicaName} has an invalid spec: ${field}: ${message}`,
    );
    return;
  }
  if (spec.destination && !rep.data.destinations.some((d) => d.name === spec.destination)) {
    finish(
      ctx,
      "Failed",
      "DestinationNotFound",
      `spec.destination: SqliteReplica ${spec.sqliteReplicaName} has no destination ${spec.destination}`,
    );
    return;
  }
  const sts = obs.statefulSet;
  const stsName = rep.data.statefulSetName;
  if (!sts) {
    finish(ctx, "Failed", "StatefulSetNotFound", `StatefulSet ${stsName} not found`);
    return;
  }
  const pod = spec.pod ?? `${stsName}-0`;
  if (!new RegExp(`^${stsName.replace(/[.]/g, "\\.")}-\\d+$`).test(pod)) {
    finish(ctx, "Failed", "PodNotFound", `spec.pod: ${pod} is not a pod of StatefulSet ${stsName}`);
    return;
  }
  s.statefulSetName = stsName;
  s.pod = pod;
  s.startedAt = iso(obs.now);
  condition(ctx, {
    type: "Admitted",
    status: "True",
    reason: "Admitted",
    message: `the only restore of SqliteReplica ${spec.sqliteReplicaName}`,
  });
  const planning = `checking that ${s.target} can be restored from pod ${pod}'s replica (plan Job)`;
  if (spec.mode === "NewClaim") {
    if (claimNotOurs(ctx, spec)) return;
    s.claimName = spec.newClaim?.name;
    ctx.actions.push({ kind: "createJob", step: "plan" });
    enter(ctx, "Planning", planning);
    return;
  }
  const claim = claimFor(sts, rep.data.database.volumeName, pod);
  if (!claim) {
    finish(
      ctx,
      "Failed",
      "VolumeNotAClaim",
      `volume ${rep.data.database.volumeName} of StatefulSet ${stsName} is not a PersistentVolumeClaim`,
    );
    return;
  }
  s.claimName = claim;
  s.backupPath = backupPathFor(rep.data.database.path, obs.name);
  ctx.actions.push({ kind: "createJob", step: "plan" });
  enter(ctx, "Planning", planning);
}

function done(ctx: Ctx): Decision {
  return {
    status: ctx.status,
    actions: ctx.actions,
    events: ctx.events,
    ...(ctx.requeueAfterMs === undefined ? {} : { requeueAfterMs: ctx.requeueAfterMs }),
  };
}
