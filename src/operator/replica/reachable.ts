/**
 * The SqliteReplica's `DestinationReachable` condition: whether every destination passed its
 * self-test in every pod, run by the pod's sidecar with the pod's own credentials (the replicator's
 * probe.ts: write, read back, list and delete a probe object). Pure: the pods' probe results
 * (`probesOf`, from each sidecar's `/status`) in, the condition out
 * (test/unit/operator-reachable.test.ts).
 *
 * - True (Reachable): every pod reports a passed self-test for every destination.
 * - False (DestinationUnreachable): some pod's self-test failed; the message names the pod, the
 *   destination (and database), the step, the store's error and the hint, so `kubectl describe`
 *   says what to fix. A Warning Event goes with the change (events.ts).
 * - Unknown (Probing): no pod yet, or a pod has not finished its first self-test (or runs a walship
 *   without it, or with `probe-interval: 0s`).
 *
 * Not part of Ready: a failed sync already makes the SqliteReplica Degraded; this condition adds
 * what a sync does not find out, e.g. credentials that can write but not delete (retention fails
 * only hours later).
 */
import type {
  DatabaseEntry,
  DestinationProbeStatus,
  PodReplicationStatus,
} from "../../api/v1alpha1/index.ts";
import type { ReplicatorStatus } from "../../shared/protocol.ts";
import type { Cond } from "./conditions.ts";

/** The longest message the condition carries. */
const MAX_MESSAGE = 4000;

/**
 * A pod's probe results from its sidecar's document, for the databases of the spec (`dbs`), named as
 * the spec names them; undefined when the sidecar reports none (not finished, or an older walship).
 */
export function probesOf(
  doc: ReplicatorStatus,
  dbs: readonly Pick<DatabaseEntry, "name" | "path">[],
): DestinationProbeStatus[] | undefined {
  const out: DestinationProbeStatus[] = [];
  const named = dbs.some((d) => d.name !== undefined);
  for (const [i, entry] of dbs.entries()) {
    // A lone database is matched by path, or is the sidecar's only one (as podFacts does).
    const db =
      doc.databases.find((d) => d.path === entry.path) ??
      (dbs.length === 1 && i === 0 && !named ? doc.databases[0] : undefined);
    for (const r of db?.replicas ?? []) {
      if (!r.probe) continue;
      out.push({
        destination: r.name,
        ...(named && entry.name !== undefined ? { database: entry.name } : {}),
        outcome: r.probe.outcome,
        ...(r.probe.step ? { step: r.probe.step } : {}),
        ...(r.probe.message ? { message: r.probe.message } : {}),
        ...(r.probe.hint ? { hint: r.probe.hint } : {}),
      });
    }
  }
  return out.length > 0 ? out : undefined;
}

/** One failure, as the condition's message says it. */
function describeFailure(pod: string, p: DestinationProbeStatus): string {
  const where =
    p.database !== undefined
      ? `destination ${p.destination} of database ${p.database}`
      : `destination ${p.destination}`;
  const hint = p.hint ? ` (hint: ${p.hint})` : "";
  return `pod ${pod}: ${where}: ${p.step ?? "probe"} failed: ${p.message ?? "no error given"}${hint}`;
}

export function destinationReachableCondition(pods: readonly PodReplicationStatus[]): Cond {
  const failures = pods.flatMap((p) =>
    (p.probes ?? []).filter((x) => x.outcome === "failed").map((x) => describeFailure(p.name, x)),
  );
  if (failures.length > 0) {
    return {
      type: "DestinationReachable",
      status: "False",
      reason: "DestinationUnreachable",
      message: failures.join("; ").slice(0, MAX_MESSAGE),
    };
  }
  if (pods.length === 0) {
    return {
      type: "DestinationReachable",
      status: "Unknown",
      reason: "Probing",
      message: "no pod runs the injected sidecar yet",
    };
  }
  const waiting = pods.filter((p) => (p.probes ?? []).length === 0).map((p) => p.name);
  if (waiting.length > 0) {
    return {
      type: "DestinationReachable",
      status: "Unknown",
      reason: "Probing",
      message: `no destination self-test reported yet by pod(s) ${waiting.join(", ")}`,
    };
  }
  const count = pods.reduce((n, p) => n + (p.probes?.length ?? 0), 0);
  return {
    type: "DestinationReachable",
    status: "True",
    reason: "Reachable",
    message: `every destination passed its self-test (write, read, list, delete) with the pods' own credentials: ${count} probe(s) in ${pods.length} pod(s)`,
  };
}
