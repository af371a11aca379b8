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
  describeIssues,
  type RestorePhase,
  SqliteReplicaSpec,
  SqliteRestoreSpec,
  selectDatabase,
} from "../../api/v1alpha1/index.ts";
import { admit } from "./admit.ts";
import { type Ctx, fail } from "./context.ts";
import { describeTarget } from "./findings.ts";
import {
  type PhaseStep,
  planning,
  restoring,
  scalingDown,
  scalingUp,
  swapping,
  verifying,
} from "./phases.ts";
import { type Decision, FINAL_PHASES, type Observed } from "./types.ts";

/** What each phase after Pending does on a look (phases.ts). */
const PHASES: Partial<Record<RestorePhase, PhaseStep>> = {
  Planning: planning,
  ScalingDown: scalingDown,
  Restoring: restoring,
  Verifying: verifying,
  Swapping: swapping,
  ScalingUp: scalingUp,
};

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
    admit(ctx, spec);
    return done(ctx);
  }
  const rep = SqliteReplicaSpec.safeParse(obs.replica);
  const db = rep.success ? selectDatabase(rep.data, spec.database, spec.sqliteReplicaName) : undefined;
  const dbPath = db && !("problem" in db) ? db.path : undefined;
  PHASES[phase]?.(ctx, spec, dbPath);
  return done(ctx);
}

function done(ctx: Ctx): Decision {
  return {
    status: ctx.status,
    actions: ctx.actions,
    events: ctx.events,
    ...(ctx.requeueAfterMs === undefined ? {} : { requeueAfterMs: ctx.requeueAfterMs }),
  };
}
