/**
 * What the objects Walship builds share, pure: the controller reference to the custom resource that
 * owns them, and the basics of every container that runs the walship image (image, pull policy,
 * security context, termination message).
 */
import { API_VERSION, type SqliteReplicaSpec } from "../../api/v1alpha1/index.ts";
import type { Container, OwnerReference } from "../kube/types.ts";
import type { LeaseRole } from "./lease.ts";
import { DEFAULT_IMAGE } from "./names.ts";
import { type AppIdentity, replicatorSecurityContext } from "./security.ts";

/** Operator-wide settings the builders need. */
export interface BuildOptions {
  /** The image when the SqliteReplica names none. */
  image?: string;
  /** The role bound to replicating pods for their Leases (lease.ts); unset: no Leases. */
  leaseRole?: LeaseRole;
}

/** The controller reference to a walship.dev object: deleting it deletes what it owns. */
export function ownerReference(
  kind: "SqliteReplica" | "SqliteRestore",
  owner: { name: string; uid: string },
): OwnerReference {
  return {
    apiVersion: API_VERSION,
    kind,
    name: owner.name,
    uid: owner.uid,
    controller: true,
    blockOwnerDeletion: true,
  };
}

/**
 * A container of the walship image as the SqliteReplica's `sidecar` settings say (image, pull policy,
 * securityContext override), running as the app (`identity`), its last log lines as the termination
 * message on failure.
 */
export function walshipContainer(
  spec: SqliteReplicaSpec,
  identity: AppIdentity,
  opts: BuildOptions,
  own: Pick<Container, "name" | "command" | "env" | "volumeMounts" | "resources">,
): Container {
  const sc = spec.sidecar;
  return {
    name: own.name,
    image: sc?.image ?? opts.image ?? DEFAULT_IMAGE,
    ...(sc?.imagePullPolicy ? { imagePullPolicy: sc.imagePullPolicy } : {}),
    ...(own.command ? { command: own.command } : {}),
    ...(own.env ? { env: own.env } : {}),
    ...(own.volumeMounts ? { volumeMounts: own.volumeMounts } : {}),
    ...(own.resources ? { resources: own.resources } : {}),
    securityContext: replicatorSecurityContext(identity, sc?.securityContext),
    terminationMessagePolicy: "FallbackToLogsOnError",
  };
}
