/**
 * The SqliteReplica's conditions, derived from what reconcile observed. Pure: literal inputs in,
 * conditions out (test/unit/operator-conditions.test.ts). `Ready` is derived from these in status.ts.
 *
 * - Replicating: every pod that runs the sidecar reports ready.
 * - Degraded: some pod has a problem; the reason is the most telling one (failures.ts POD_REASONS).
 * - Restricted: whether the containers Walship adds meet Pod Security `restricted` (security.ts); not
 *   part of Ready (an app that runs as root is a choice), but said, with a Warning Event.
 */
import type { Condition, Phase, PodReplicationStatus } from "../../api/v1alpha1/index.ts";
import type { SecurityContext } from "../kube/types.ts";
import {
  type AppIdentity,
  describeRunAs,
  restrictedProblems,
  type SecurityOverride,
} from "../specs/security.ts";
import { POD_REASONS, type PodReason } from "./failures.ts";

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
