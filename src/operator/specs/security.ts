/**
 * Who the replicator runs as, and whether the containers Walship adds meet Pod Security `restricted`.
 * Pure.
 *
 * The replicator opens the app's database read-write and creates `-wal`, `-shm` and the
 * `.<db>-litestream` directory beside it; a restored database is created 0600. So the sidecar, the
 * restore init container and every restore Job run as the app container's effective user and group:
 * the container's `securityContext.runAsUser`/`runAsGroup`, else the pod's (fsGroup and
 * supplementalGroups are pod-level and reach every container anyway). An app that runs as root makes
 * the replicator run as root too (`runAsNonRoot: false`), and such a pod is not `restricted`. An app
 * whose user is not set anywhere runs as its image's user, which the operator cannot see: the
 * replicator then runs as the walship image's user (1000) and the docs say what to set.
 *
 * `spec.sidecar.securityContext` is merged field by field over that (it never replaces the whole
 * context, so setting only `runAsUser` keeps `allowPrivilegeEscalation: false`, the dropped
 * capabilities and the seccomp profile).
 */
import type { PodSpec, SecurityContext } from "../kube/types.ts";

/** The user-settable part of the sidecar's securityContext (spec.sidecar.securityContext). */
export interface SecurityOverride {
  runAsUser?: number;
  runAsGroup?: number;
  runAsNonRoot?: boolean;
  readOnlyRootFilesystem?: boolean;
  allowPrivilegeEscalation?: boolean;
  capabilities?: { add?: string[]; drop?: string[] };
  seccompProfile?: { type: "RuntimeDefault" | "Localhost" | "Unconfined"; localhostProfile?: string };
}

/** The restricted securityContext (Pod Security Standards "restricted"), the base of every container. */
export const RESTRICTED_SECURITY_CONTEXT: SecurityContext = {
  allowPrivilegeEscalation: false,
  capabilities: { drop: ["ALL"] },
  readOnlyRootFilesystem: true,
  runAsNonRoot: true,
  seccompProfile: { type: "RuntimeDefault" },
};

/** The app container's effective identity, and where each part came from. */
export interface AppIdentity {
  runAsUser?: number;
  runAsGroup?: number;
  /** Pod-level; applies to every container of the pod without Walship doing anything. */
  fsGroup?: number;
}

/** The app container's effective user and group: the container's securityContext over the pod's. */
export function appIdentity(podSpec: PodSpec | undefined, appContainer: string): AppIdentity {
  const pod = podSpec?.securityContext;
  const c = podSpec?.containers?.find((x) => x.name === appContainer)?.securityContext;
  const out: AppIdentity = {};
  const uid = c?.runAsUser ?? pod?.runAsUser;
  const gid = c?.runAsGroup ?? pod?.runAsGroup;
  if (uid !== undefined && uid !== null) out.runAsUser = uid;
  if (gid !== undefined && gid !== null) out.runAsGroup = gid;
  if (pod?.fsGroup !== undefined && pod.fsGroup !== null) out.fsGroup = pod.fsGroup;
  return out;
}

/**
 * The securityContext of every container Walship adds: restricted, as the app's user and group, with
 * the user's override merged over it. `runAsNonRoot` follows the resulting user (false for uid 0,
 * which the kubelet would otherwise refuse to start) unless the override sets it.
 */
export function replicatorSecurityContext(id: AppIdentity, override?: SecurityOverride): SecurityContext {
  const o = override ?? {};
  const uid = o.runAsUser ?? id.runAsUser;
  const gid = o.runAsGroup ?? id.runAsGroup;
  const base = RESTRICTED_SECURITY_CONTEXT;
  const caps = {
    ...(o.capabilities?.add !== undefined ? { add: [...o.capabilities.add] } : {}),
    drop: [...(o.capabilities?.drop ?? base.capabilities?.drop ?? [])],
  };
  return {
    allowPrivilegeEscalation: o.allowPrivilegeEscalation ?? base.allowPrivilegeEscalation,
    capabilities: caps,
    readOnlyRootFilesystem: o.readOnlyRootFilesystem ?? base.readOnlyRootFilesystem,
    runAsNonRoot: o.runAsNonRoot ?? uid !== 0,
    ...(uid !== undefined ? { runAsUser: uid } : {}),
    ...(gid !== undefined ? { runAsGroup: gid } : {}),
    seccompProfile: o.seccompProfile ? { ...o.seccompProfile } : { ...base.seccompProfile! },
  } as SecurityContext;
}

/**
 * Why a container with this securityContext does not meet Pod Security `restricted` (v1.33), one
 * phrase per rule it breaks; empty when it does. Every field the rules read is set at container
 * level by `replicatorSecurityContext`, so the pod's own context does not change the answer.
 */
export function restrictedProblems(sc: SecurityContext): string[] {
  const out: string[] = [];
  if (sc.runAsUser === 0) out.push("runAsUser 0 (root)");
  if (sc.runAsNonRoot !== true) out.push("runAsNonRoot is not true");
  if (sc.allowPrivilegeEscalation !== false) out.push("allowPrivilegeEscalation is not false");
  if (!(sc.capabilities?.drop ?? []).includes("ALL")) out.push("capabilities.drop does not include ALL");
  const added = (sc.capabilities?.add ?? []).filter((c) => c !== "NET_BIND_SERVICE");
  if (added.length > 0) out.push(`capabilities.add ${added.join(", ")}`);
  const seccomp = sc.seccompProfile?.type;
  if (seccomp !== "RuntimeDefault" && seccomp !== "Localhost")
    out.push(`seccompProfile ${seccomp ?? "unset"}`);
  return out;
}

/** Who the replicator runs as, for messages: `uid 1000 gid 1000 (fsGroup 2000)`. */
export function describeRunAs(sc: SecurityContext | undefined, fsGroup?: number): string {
  const uid = sc?.runAsUser ?? undefined;
  const gid = sc?.runAsGroup ?? undefined;
  const parts = [
    uid === undefined ? "the image's user (uid 1000)" : `uid ${uid}`,
    ...(gid !== undefined ? [`gid ${gid}`] : []),
    ...(fsGroup !== undefined ? [`fsGroup ${fsGroup}`] : []),
  ];
  return parts.join(" ");
}
