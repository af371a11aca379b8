/**
 * The SqliteReplica's conditions and phase, derived from what reconcile observed. Pure: literal inputs
 * in, conditions out (test/unit/operator-conditions.test.ts, operator-security.test.ts). `Ready` is
 * derived from the others (deriveReady) whenever the status is written (withReady).
 *
 * - Replicating: every pod that runs the sidecar reports ready.
 * - Degraded: some pod has a problem; the reason is the most telling one (failures.ts POD_REASONS).
 * - WriterConflict: some pod refuses a replica path another writer holds (fencing.ts).
 * - Restricted: whether the containers Walship adds meet Pod Security `restricted` (security.ts); not
 *   part of Ready (an app that runs as root is a choice), but said, with a Warning Event.
 * - DiskPressure, WALGrowing, CheckpointFailing: guardrails (guardrails.ts); not part of Ready either.
 */
import type {
  Condition,
  Phase,
  PodReplicationStatus,
  SqliteReplicaStatus,
} from "../../api/v1alpha1/index.ts";
import type { SecurityContext } from "../kube/types.ts";
import {
  type AppIdentity,
  describeRunAs,
  restrictedProblems,
  type SecurityOverride,
} from "../specs/security.ts";
import { getCondition, setCondition } from "../status.ts";
import { POD_REASONS, type PodReason } from "./failures.ts";
import { writerConflictCondition } from "./fencing.ts";
import { guardrailConditions, guardrailsUnknown } from "./guardrails.ts";

export type Cond = Omit<Condition, "lastTransitionTime" | "observedGeneration">;

export function replicatingCondition(pods: readonly PodReplicationStatus[]): Cond {
  if (pods.length === 0) {
    return {
      type: "Replicating",
      status: "False",
      reason: "Waiting",
      message: "no pod runs the injected sidecar yet",
    };
  }
  const notReady = pods.filter((p) => !p.ready);
  if (notReady.length > 0) {
    return {
      type: "Replicating",
      status: "False",
      reason: "NotReady",
      message: `not replicating yet: ${notReady.map((p) => p.name).join(", ")}`,
    };
  }
  return {
    type: "Replicating",
    status: "True",
    reason: "AllPodsReplicating",
    message: `${pods.length} pod(s) replicating`,
  };
}

export function degradedCondition(pods: readonly PodReplicationStatus[]): Cond {
  const failing = pods.filter((p) => p.lastError);
  if (failing.length === 0) return { type: "Degraded", status: "False", reason: "NoErrors", message: "" };
  const rank = (p: PodReplicationStatus) => {
    const i = POD_REASONS.indexOf((p.reason ?? "ReplicationError") as PodReason);
    return i === -1 ? POD_REASONS.length : i;
  };
  const worst = [...failing].sort((a, b) => rank(a) - rank(b))[0]!;
  return {
    type: "Degraded",
    status: "True",
    reason: worst.reason ?? "ReplicationError",
    message: failing
      .map((p) => `pod ${p.name}: ${p.lastError}`)
      .join("; ")
      .slice(0, 4000),
  };
}

/**
 * Whether the containers Walship adds (all built with the same securityContext `sc`) meet Pod
 * Security `restricted`, and if not, why: the app running as root, or the spec's override.
 */
export function restrictedCondition(
  sc: SecurityContext,
  identity: AppIdentity,
  appContainer: string,
  override: SecurityOverride | undefined,
): Cond {
  const problems = restrictedProblems(sc);
  const who = describeRunAs(sc, identity.fsGroup);
  if (problems.length === 0) {
    return {
      type: "Restricted",
      status: "True",
      reason: "Restricted",
      message: `the walship containers meet Pod Security restricted, running as ${who}`,
    };
  }
  const fromApp = identity.runAsUser === 0 && override?.runAsUser === undefined;
  const cause = fromApp
    ? `run as root like container ${appContainer} (runAsUser 0)`
    : "have spec.sidecar.securityContext";
  return {
    type: "Restricted",
    status: "False",
    reason: fromApp ? "RunsAsRoot" : "NotRestricted",
    message:
      `the walship containers ${cause} and are not Pod Security restricted (${problems.join("; ")}); ` +
      "a namespace that enforces restricted rejects these pods",
  };
}

/** The phase once injected. */
export function injectedPhase(replicating: Cond, degraded: Cond): Phase {
  if (degraded.status === "True") return "Degraded";
  return replicating.status === "True" ? "Replicating" : "Injecting";
}

/** The conditions and phase reconcile writes, and whether all is well (poll at the slow pace). */
export interface DerivedStatus {
  conditions: Cond[];
  phase: Phase;
  settled: boolean;
}

/** The workload ("StatefulSet app") carries the replicator: how its pods replicate, and the `restricted` finding. */
export function injectedStatus(
  workload: string,
  pods: readonly PodReplicationStatus[],
  restricted: Cond,
): DerivedStatus {
  const replicating = replicatingCondition(pods);
  const degraded = degradedCondition(pods);
  return {
    conditions: [
      {
        type: "Injected",
        status: "True",
        reason: "Injected",
        message: `${workload} carries the replicator`,
      },
      replicating,
      degraded,
      restricted,
      ...guardrailConditions(pods),
      writerConflictCondition(pods),
    ],
    phase: injectedPhase(replicating, degraded),
    settled: replicating.status === "True" && degraded.status === "False",
  };
}

/** A step stopped reconcile (Blocked): nothing is injected, for `reason`. */
export function blockedStatus(reason: string, message: string): DerivedStatus {
  return {
    conditions: [
      { type: "Injected", status: "False", reason, message },
      { type: "Replicating", status: "Unknown", reason, message: "not injected" },
      ...guardrailsUnknown(reason, "not injected"),
    ],
    phase: "Failed",
    settled: false,
  };
}

/**
 * What the Injected message of a Deployment refused for its shape ends with: the replicator is
 * removed from its pod template (whether it was in it or not), so this holds on every reconcile.
 */
export const KEPT_OUT = "; the replicator is kept out of its pod template while this stands";

/** Paused by `annotation`: what Walship added to the workload ("StatefulSet app") is removed. */
export function pausedStatus(workload: string, annotation: string): DerivedStatus {
  const why = `paused by the annotation ${annotation}`;
  return {
    conditions: [
      {
        type: "Injected",
        status: "False",
        reason: "Paused",
        message: `${why}: the replicator is removed from ${workload}`,
      },
      { type: "Replicating", status: "False", reason: "Paused", message: `${why}: nothing is replicated` },
      { type: "Degraded", status: "False", reason: "Paused", message: "" },
      ...guardrailsUnknown("Paused", why),
    ],
    phase: "Paused",
    settled: true,
  };
}

/**
 * Ready, derived: True when Injected and Replicating are True and Degraded is not True; otherwise
 * False with the reason and message of the first condition that says why.
 */
export function deriveReady(
  conditions: readonly Condition[],
  generation: number | undefined,
): Omit<Condition, "lastTransitionTime"> {
  const injected = getCondition(conditions, "Injected");
  const replicating = getCondition(conditions, "Replicating");
  const degraded = getCondition(conditions, "Degraded");
  const base = generation === undefined ? {} : { observedGeneration: generation };
  if (injected?.status !== "True") {
    return {
      ...base,
      type: "Ready",
      status: "False",
      reason: injected?.reason ?? "NotInjected",
      message: injected?.message ?? "",
    };
  }
  if (degraded?.status === "True") {
    return { ...base, type: "Ready", status: "False", reason: degraded.reason, message: degraded.message };
  }
  if (replicating?.status !== "True") {
    return {
      ...base,
      type: "Ready",
      status: "False",
      reason: replicating?.reason ?? "Waiting",
      message: replicating?.message ?? "",
    };
  }
  return { ...base, type: "Ready", status: "True", reason: "Replicating", message: replicating.message };
}

/** PatchOptions.derive for a SqliteReplica: sets Ready from the other conditions. */
export function withReady(s: SqliteReplicaStatus, generation: number | undefined): void {
  s.conditions = setCondition(s.conditions ?? [], deriveReady(s.conditions ?? [], generation));
}
