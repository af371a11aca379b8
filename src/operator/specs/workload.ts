/**
 * The workload a SqliteReplica replicates: a StatefulSet, or a Deployment with one replica. Both
 * carry a pod template, a selector and a replica count where the operator reads them, so the
 * injection, the pod observation and the restores treat them alike; this file holds where they
 * differ: the API path, and the name of the replica each pod writes. Pure.
 */
import type { WorkloadKind, WorkloadRef } from "../../api/v1alpha1/index.ts";
import type { Deployment, StatefulSet } from "../kube/types.ts";

/** A StatefulSet or a Deployment, as read from the API server. */
export type WorkloadObject = StatefulSet | Deployment;

const PLURALS: Record<WorkloadKind, string> = { StatefulSet: "statefulsets", Deployment: "deployments" };

/** The workload's plural resource name: statefulsets or deployments. */
export function workloadPlural(kind: WorkloadKind): string {
  return PLURALS[kind];
}

/** The workload's API path. */
export function workloadPath(ns: string, ref: WorkloadRef): string {
  return `/apis/apps/v1/namespaces/${ns}/${PLURALS[ref.kind]}/${ref.name}`;
}

/**
 * The fixed name of the replica a Deployment's pod writes, `<path>/<Deployment name>`: its pods' names
 * change with every rollout, and restore-on-start must find the replica the pod before wrote.
 * Undefined for a StatefulSet, whose pods each write their own, `<path>/<pod name>`.
 */
export function fixedReplicaName(ref: WorkloadRef): string | undefined {
  return ref.kind === "Deployment" ? ref.name : undefined;
}

/** The volumeClaimTemplates of a StatefulSet; none for a Deployment. */
export function claimTemplates(w: WorkloadObject): NonNullable<StatefulSet["spec"]>["volumeClaimTemplates"] {
  return (w as StatefulSet).spec?.volumeClaimTemplates ?? [];
}
