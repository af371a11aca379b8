/**
 * Single-writer fencing as the operator sees it (issue #19). Each replicator holds a claim on its
 * replica path (`<path>/walship/claim.json`, src/replicator/claim.ts) and refuses to write where
 * another holds one; its `/status` names the other holder. From the pods' facts, the SqliteReplica's
 * `WriterConflict` condition (True is the problem, as with Degraded) names the pods that refuse and
 * who holds their paths; its change brings a Warning Event (events.ts). Pure.
 *
 * Why the claim and not a Lease alone: the collision is of replica paths in a bucket, which two
 * clusters, a copied manifest or a replicator outside any cluster can share; only an object beside
 * the layout is seen by all of them, and the sidecar needs no RBAC to hold it. In a cluster the
 * sidecar also holds a Lease per destination (src/replicator/lease.ts), which the API server writes
 * atomically: two writers in one namespace never overlap, and `kubectl get lease` names the holder.
 */
import type { PodReplicationStatus } from "../../api/v1alpha1/index.ts";
import type { Cond } from "./conditions.ts";

/** The error a pod's entry carries for a destination another writer holds (by its Lease, if named). */
export function fencedMessage(destination: string, location: string, holder: string, lease?: string): string {
  const by = lease ? `, by Lease ${lease}` : "";
  return (
    `destination ${destination}: another writer holds the replica path ${location} (${holder}${by}); ` +
    "nothing is written there until its claim is released or expires"
  );
}

/** WriterConflict: True while some pod refuses a destination that another writer holds. */
export function writerConflictCondition(pods: readonly PodReplicationStatus[]): Cond {
  const fenced = pods.filter((p) => p.fencedBy);
  if (fenced.length === 0) {
    return { type: "WriterConflict", status: "False", reason: "NoConflict", message: "" };
  }
  return {
    type: "WriterConflict",
    status: "True",
    reason: "WriterConflict",
    message: fenced
      .map((p) => `pod ${p.name} refuses to replicate: ${p.fencedBy}`)
      .join("; ")
      .concat(
        "; two writers on one replica path would interleave: stop the other writer, or give this one " +
          "another path",
      )
      .slice(0, 4000),
  };
}
