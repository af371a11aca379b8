/**
 * Whether a Deployment can be replicated, pure. A SQLite database has one writer and a replica one
 * replicator, so the Deployment must never run two pods on the database at once:
 *
 * - at most one replica (`TooManyReplicas`): two pods would write the same file and both sidecars the
 *   same replica, `<path>/<Deployment name>` (workload.ts); 0 is accepted (a SqliteRestore InPlace
 *   scales to it, and a stopped app is no danger);
 * - the `Recreate` strategy (`RollingUpdateStrategy`): a rolling update, the default, starts the new
 *   pod while the old one still writes, and each change of the pod template (the injection itself
 *   is one) rolls the pods;
 * - the database on a PersistentVolumeClaim (`VolumeNotAClaim`): the file must outlive the pod for
 *   restore-on-start to mean anything, and a SqliteRestore InPlace restores onto that claim.
 */
import { databaseField, databasesOf, type SqliteReplicaSpec } from "../../api/v1alpha1/index.ts";
import type { Deployment } from "../kube/types.ts";
import type { TargetProblem } from "./statefulset.ts";

export function deploymentProblem(dep: Deployment, spec: SqliteReplicaSpec): TargetProblem | undefined {
  const name = dep.metadata?.name ?? "";
  const replicas = dep.spec?.replicas ?? 1;
  if (replicas > 1) {
    return {
      reason: "TooManyReplicas",
      field: "spec.workloadRef",
      message:
        `Deployment ${name} has ${replicas} replicas; a Deployment is replicated only with replicas: 1 ` +
        "(two pods would write the same database and the same replica); use a StatefulSet for more",
    };
  }
  const strategy = dep.spec?.strategy?.type ?? "RollingUpdate";
  if (strategy !== "Recreate") {
    return {
      reason: "RollingUpdateStrategy",
      field: "spec.workloadRef",
      message:
        `Deployment ${name} has strategy ${strategy}: a rollout would start the new pod while the old ` +
        "one still writes the database; set spec.strategy.type: Recreate",
    };
  }
  for (const [i, db] of databasesOf(spec).entries()) {
    const vol = (dep.spec?.template?.spec?.volumes ?? []).find((v) => v.name === db.volumeName);
    if (vol && !vol.persistentVolumeClaim) {
      return {
        reason: "VolumeNotAClaim",
        field: `${databaseField(spec, i)}.volumeName`,
        message:
          `volume ${vol.name} of Deployment ${name} is not a PersistentVolumeClaim: the database ${db.path} ` +
          "would not outlive its pod; put it on a claim",
      };
    }
  }
  return undefined;
}
