/**
 * One Event per condition change of a SqliteReplica (a Warning when the new state is a problem), and
 * one log line each. A failed Event is logged, never thrown: the status already says it.
 */
import { API_VERSION } from "../../api/v1alpha1/index.ts";
import { describeError } from "../../shared/errors.ts";
import type { Logger } from "../../shared/log.ts";
import type { EventRecorder } from "../kube/events.ts";
import type { KubeObject } from "../kube/types.ts";
import type { ConditionChange } from "../status.ts";
import { GUARDRAIL_CONDITIONS } from "./guardrails.ts";

const GUARDRAILS: ReadonlySet<string> = new Set(GUARDRAIL_CONDITIONS);

/** Reasons that are a problem (a Warning Event) when their condition turns bad. */
const WARNING_REASONS = new Set([
  "InvalidSpec",
  "StatefulSetNotFound",
  "DeploymentNotFound",
  "TooManyReplicas",
  "RollingUpdateStrategy",
  "VolumeNotAClaim",
  "Conflict",
  "ContainerNotFound",
  "VolumeNotFound",
  "VolumeNotMounted",
  "PathOutsideVolume",
  "NameClash",
  "PortConflict",
  "SecretMissing",
  "FieldConflict",
  "ReplicationError",
  "SidecarUnreachable",
  "RestoreFailed",
  "OutOfMemory",
  "PermissionDenied",
  "SidecarFailing",
  "RunsAsRoot",
  "NotRestricted",
  "DestinationUnreachable",
  "DrillFailed",
  "InvalidSchedule",
  "WriterConflict",
]);

/** Conditions whose True is the problem. */
const TRUE_IS_BAD = new Set(["Degraded", "WriterConflict"]);

/** `cr` as an Event's involved object. */
export function asSqliteReplica(cr: KubeObject): KubeObject {
  return { ...cr, apiVersion: API_VERSION, kind: "SqliteReplica" };
}

export async function recordChanges(
  events: EventRecorder,
  log: Logger,
  cr: KubeObject,
  changes: readonly ConditionChange[],
): Promise<void> {
  // One Event per change, sent at once (they are independent; a reconcile waits for the slowest).
  const record = async (ch: ConditionChange): Promise<void> => {
    if (ch.type === "Ready" && ch.to.status !== "True") return; // the cause has its own Event
    // Degraded, a writer conflict and the guardrails are problems when True; the others when not True.
    const trueIsBad = TRUE_IS_BAD.has(ch.to.type) || GUARDRAILS.has(ch.to.type);
    const bad = trueIsBad
      ? ch.to.status === "True" && (WARNING_REASONS.has(ch.to.reason) || GUARDRAILS.has(ch.to.type))
      : WARNING_REASONS.has(ch.to.reason) && ch.to.status !== "True";
    // No Event for the first all-clear (a guardrail goes from Unknown to False once pods report).
    if (trueIsBad && ch.to.status !== "True" && (!ch.from || ch.from.status === "Unknown")) return;
    if ((ch.to.type === "Replicating" || GUARDRAILS.has(ch.to.type)) && ch.to.status === "Unknown") return;
    try {
      await events.record(asSqliteReplica(cr), {
        type: bad ? "Warning" : "Normal",
        reason: ch.to.reason,
        message: ch.to.message || `${ch.to.type} is ${ch.to.status}`,
      });
    } catch (err) {
      log.warn({ err: describeError(err), reason: ch.to.reason }, "record event failed");
    }
  };
  await Promise.all(changes.map(record));
  for (const ch of changes) {
    log.info(
      {
        sqlitereplica: `${cr.metadata?.namespace}/${cr.metadata?.name}`,
        condition: ch.type,
        status: ch.to.status,
        reason: ch.to.reason,
      },
      "condition changed",
    );
  }
}
