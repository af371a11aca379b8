/**
 * What the SqliteRestore machine reads and says, pure: the target as the Target column shows it, the
 * paths and claim a restore uses, whether the reported position honours the target, and why a Job
 * failed.
 */
import type { SqliteRestoreSpec } from "../../api/v1alpha1/index.ts";
import { hex8 } from "../../shared/format.ts";
import { type JobStep, jobDeadlineSeconds, restoreJobName } from "../specs/restorejob.ts";
import { claimTemplates, type WorkloadObject } from "../specs/workload.ts";
import type { RestoreResult } from "./result.ts";
import type { JobState } from "./types.ts";

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
export function claimFor(sts: WorkloadObject, volumeName: string, pod: string): string | undefined {
  if ((claimTemplates(sts) ?? []).some((t) => t.metadata?.name === volumeName)) {
    return `${volumeName}-${pod}`;
  }
  const v = (sts.spec?.template?.spec?.volumes ?? []).find((x) => x.name === volumeName);
  return v?.persistentVolumeClaim?.claimName;
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
export function classifyJobFailure(
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

export function foreignJobMessage(restoreName: string, step: JobStep): string {
  return (
    `Job ${restoreJobName(restoreName, step)} exists and was not created by this SqliteRestore (left ` +
    "over from an earlier one of the same name?); it is not reused: delete it and create the SqliteRestore again"
  );
}
