/**
 * What the sidecar needs to hold a Lease per destination (src/replicator/lease.ts): the pod's service
 * account token projected into the sidecar alone, and a RoleBinding that grants that service account
 * the replicator's Lease rights in its namespace. Pure.
 *
 * The rights are a ClusterRole (or, when the operator watches listed namespaces only, a Role in each)
 * that the chart installs, `<fullname>-replicator`: get, create and update Leases, nothing else. The
 * operator binds it and may bind nothing else (RBAC `bind` on that one name), so it never holds
 * the right to grant anything wider.
 *
 * A pod template that sets `automountServiceAccountToken: false` says the pod must not carry API
 * credentials: it gets no token and no Lease, and its bucket claim alone fences it.
 */
import { ErrorCodes, WalshipError } from "../../shared/errors.ts";
import type { StatefulSet, Volume, VolumeMount } from "../kube/types.ts";
import { ownerReference } from "./common.ts";
import { MANAGED_BY_LABELS, SIDECAR_CONTAINER, SQLITE_REPLICA_LABEL } from "./names.ts";
import type { WorkloadObject } from "./workload.ts";

/** The sidecar's projected token volume and where it is mounted (WALSHIP_KUBE_DIR). */
export const KUBE_VOLUME = "walship-kube";
export const KUBE_DIR = "/var/run/secrets/walship/kube";
/** The projected token's lifetime; the kubelet renews it at 80% of it. */
const TOKEN_SECONDS = 3600;

/** The role the operator binds to each replicating pod's service account. */
export interface LeaseRole {
  kind: "ClusterRole" | "Role";
  name: string;
}

/** `-replicator-lease-role KIND/NAME`: which role to bind; empty for no Leases. */
export function parseLeaseRole(value: string | undefined): LeaseRole | undefined {
  if (value === undefined || value === "") return undefined;
  const m = /^(ClusterRole|Role)\/([a-z0-9]([-a-z0-9.]*[a-z0-9])?)$/.exec(value);
  if (!m) {
    throw new WalshipError(
      ErrorCodes.USAGE,
      `parse flags: -replicator-lease-role: ${JSON.stringify(value)} is not ClusterRole/NAME or Role/NAME`,
    );
  }
  return { kind: m[1] as LeaseRole["kind"], name: m[2]! };
}

/** The service account the workload's pods run as, and whether they may carry a token at all. */
export function podServiceAccount(workload: WorkloadObject): { name: string; automount: boolean } {
  const pod = workload.spec?.template?.spec;
  return {
    name: pod?.serviceAccountName || pod?.serviceAccount || "default",
    automount: pod?.automountServiceAccountToken !== false,
  };
}

/** The RoleBinding of `role` to the pods' service account, owned by the SqliteReplica. */
export function buildLeaseRoleBinding(
  owner: { name: string; namespace: string; uid: string },
  serviceAccount: string,
  role: LeaseRole,
) {
  return {
    apiVersion: "rbac.authorization.k8s.io/v1",
    kind: "RoleBinding",
    metadata: {
      name: leaseRoleBindingName(owner.name),
      namespace: owner.namespace,
      labels: { ...MANAGED_BY_LABELS, [SQLITE_REPLICA_LABEL]: owner.name },
      ownerReferences: [ownerReference("SqliteReplica", owner)],
    },
    roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: role.kind, name: role.name },
    subjects: [{ kind: "ServiceAccount", name: serviceAccount, namespace: owner.namespace }],
  };
}

export function leaseRoleBindingName(sqliteReplicaName: string): string {
  return `${sqliteReplicaName}-walship-lease`;
}

/**
 * Adds the token volume, the sidecar's mount of it and the env that turns Leases on
 * (WALSHIP_KUBE_DIR, WALSHIP_SQLITEREPLICA_UID: the Leases' owner) to an apply patch
 * (statefulset.ts buildApplyPatch). Returns the patch.
 */
export function withLeaseAccess(patch: StatefulSet, sqliteReplicaUid: string): StatefulSet {
  const pod = patch.spec?.template.spec;
  const sidecar = pod?.initContainers?.find((c) => c.name === SIDECAR_CONTAINER);
  if (!pod || !sidecar) return patch;
  const volume: Volume = {
    name: KUBE_VOLUME,
    projected: {
      sources: [
        { serviceAccountToken: { path: "token", expirationSeconds: TOKEN_SECONDS } },
        { configMap: { name: "kube-root-ca.crt", items: [{ key: "ca.crt", path: "ca.crt" }] } },
      ],
    },
  };
  const mount: VolumeMount = { name: KUBE_VOLUME, mountPath: KUBE_DIR, readOnly: true };
  pod.volumes = [...(pod.volumes ?? []), volume];
  sidecar.volumeMounts = [...(sidecar.volumeMounts ?? []), mount];
  sidecar.env = [
    ...(sidecar.env ?? []),
    { name: "WALSHIP_KUBE_DIR", value: KUBE_DIR },
    { name: "WALSHIP_SQLITEREPLICA_UID", value: sqliteReplicaUid },
  ];
  return patch;
}
