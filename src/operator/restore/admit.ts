/**
 * Pending: whether this SqliteRestore may start (one restore of a SqliteReplica at a time; the
 * SqliteReplica, its destination, StatefulSet, pod and claim exist), and what it records before the
 * plan Job runs. Pure.
 */
import {
  describeIssues,
  describeWorkload,
  SqliteReplicaSpec,
  type SqliteRestoreSpec,
  selectDatabase,
  workloadOf,
} from "../../api/v1alpha1/index.ts";
import { isoSeconds } from "../../shared/format.ts";
import { type Ctx, condition, enter, finish } from "./context.ts";
import { backupPathFor, claimFor } from "./findings.ts";
import { FINAL_PHASES, type Observed, type OtherRestore } from "./types.ts";

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

/** NewClaim: fails (nothing written yet) when the claim exists and is not this restore's. */
export function claimNotOurs(ctx: Ctx, spec: SqliteRestoreSpec): boolean {
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

/** Pending: admits the restore and starts the plan Job, or fails it at once (nothing changed yet). */
export function admit(ctx: Ctx, spec: SqliteRestoreSpec): void {
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
  const db = selectDatabase(rep.data, spec.database, spec.sqliteReplicaName);
  if ("problem" in db) {
    finish(ctx, "Failed", "DatabaseNotFound", db.problem);
    return;
  }
  const sts = obs.workload;
  const ref = workloadOf(rep.data) ?? { kind: "StatefulSet", name: "" };
  const what = describeWorkload(ref);
  if (!sts) {
    finish(ctx, "Failed", `${ref.kind}NotFound`, `${what} not found`);
    return;
  }
  const deployment = ref.kind === "Deployment";
  if (deployment && spec.pod !== undefined) {
    finish(
      ctx,
      "Failed",
      "PodNotFound",
      `spec.pod: the pods of ${what} share one replica, named after the Deployment; leave spec.pod unset`,
    );
    return;
  }
  const pod = spec.pod ?? `${ref.name}-0`;
  if (!deployment && !new RegExp(`^${ref.name.replace(/[.]/g, "\\.")}-\\d+$`).test(pod)) {
    finish(ctx, "Failed", "PodNotFound", `spec.pod: ${pod} is not a pod of ${what}`);
    return;
  }
  s.workloadRef = ref;
  if (deployment) delete s.pod;
  else {
    s.statefulSetName = ref.name;
    s.pod = pod;
  }
  s.startedAt = isoSeconds(obs.now);
  condition(ctx, {
    type: "Admitted",
    status: "True",
    reason: "Admitted",
    message: `the only restore of SqliteReplica ${spec.sqliteReplicaName}`,
  });
  const source = deployment ? `${what}'s replica` : `pod ${pod}'s replica`;
  const planning = `checking that ${s.target} can be restored from ${source} (plan Job)`;
  if (spec.mode === "NewClaim") {
    if (claimNotOurs(ctx, spec)) return;
    s.claimName = spec.newClaim?.name;
    ctx.actions.push({ kind: "createJob", step: "plan" });
    enter(ctx, "Planning", planning);
    return;
  }
  const claim = claimFor(sts, db.volumeName, pod);
  if (!claim) {
    finish(
      ctx,
      "Failed",
      "VolumeNotAClaim",
      `volume ${db.volumeName} of ${what} is not a PersistentVolumeClaim`,
    );
    return;
  }
  s.claimName = claim;
  s.backupPath = backupPathFor(db.path, obs.name);
  ctx.actions.push({ kind: "createJob", step: "plan" });
  enter(ctx, "Planning", planning);
}
