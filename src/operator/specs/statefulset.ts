/**
 * SqliteReplica + StatefulSet -> what Walship adds to the StatefulSet's pod template, as a
 * server-side-apply configuration for field manager `walship`. Pure.
 *
 * The apply configuration holds only Walship's fields: the restore init container, the replicator
 * sidecar (a native sidecar: an init container with `restartPolicy: Always`), the config volume,
 * the file destinations' claims, the S3 destinations' key volumes, and the config-hash annotation. `initContainers` and `volumes` are
 * lists keyed by name, so the user's entries are untouched; applying the empty configuration
 * (`removalPatch`) removes exactly what Walship added.
 */
import path from "node:path";
import {
  type DatabaseEntry,
  databaseField,
  databasesOf,
  describeWorkload,
  metricsPort,
  type SqliteReplicaSpec,
  type WorkloadRef,
  workloadOf,
} from "../../api/v1alpha1/index.ts";
import type { Container, EnvVar, StatefulSet, Volume, VolumeMount } from "../kube/types.ts";
import { type BuildOptions, walshipContainer } from "./common.ts";
import { destinationCredentials } from "./credentials.ts";
import {
  CONFIG_DIR,
  CONFIG_HASH_ANNOTATION,
  CONFIG_PATH,
  CONFIG_VOLUME,
  CREDENTIALS_DIR,
  configMapName,
  credentialsVolumeName,
  FILE_DESTINATIONS_DIR,
  fileVolumeName,
  HTTP_PORT_NAME,
  RESTORE_CONTAINER,
  SIDECAR_CONTAINER,
  SQLITE_REPLICA_LABEL,
} from "./names.ts";
import { type AppIdentity, appIdentity } from "./security.ts";
import { claimTemplates, fixedReplicaName, type WorkloadObject } from "./workload.ts";

/** The app container's mount of the volume that holds a database. */
export interface DataMount {
  volumeName: string;
  /** The app container's mountPath of the volume; the database path is under it. */
  mountPath: string;
  /** The mount's subPath, if the app mounts part of the volume. */
  subPath?: string;
}

/** Where the databases live in the pod, resolved from the StatefulSet. */
export interface Target {
  appContainer: string;
  /** One per database of the spec, in its order (databasesOf). */
  mounts: DataMount[];
  /** The app container's effective user and group (security.ts); the replicator runs as them. */
  identity: AppIdentity;
  /** The replica's fixed name (a Deployment's, workload.ts); unset: each pod's own name. */
  replicaName?: string;
}

/** Why a SqliteReplica cannot be attached to its StatefulSet; `field` names the spec field. */
export interface TargetProblem {
  reason:
    | "ContainerNotFound"
    | "VolumeNotFound"
    | "VolumeNotMounted"
    | "PathOutsideVolume"
    | "NameClash"
    | "PortConflict"
    | "TooManyReplicas"
    | "RollingUpdateStrategy"
    | "VolumeNotAClaim";
  field: string;
  message: string;
}

/** The spec field that names the workload, for messages: spec.workloadRef or spec.statefulSetName. */
export function workloadField(spec: Pick<SqliteReplicaSpec, "workloadRef">): string {
  return spec.workloadRef ? "spec.workloadRef" : "spec.statefulSetName";
}

/** The workload `spec` names (a parsed spec always names one). */
export function specWorkload(spec: SqliteReplicaSpec): WorkloadRef {
  return workloadOf(spec) ?? { kind: "StatefulSet", name: "" };
}

/** Finds the app container and the mount that holds the database in the workload `sts`. */
export function resolveTarget(spec: SqliteReplicaSpec, sts: WorkloadObject): Target | TargetProblem {
  const ref = specWorkload(spec);
  const what = describeWorkload({ kind: ref.kind, name: sts.metadata?.name ?? ref.name });
  const podSpec = sts.spec?.template?.spec;
  const containers = podSpec?.containers ?? [];
  const app = spec.appContainer ? containers.find((c) => c.name === spec.appContainer) : containers[0];
  if (!app) {
    return {
      reason: "ContainerNotFound",
      field: "spec.appContainer",
      message: `${what} has no container ${JSON.stringify(spec.appContainer ?? "")}`,
    };
  }
  const mounts: DataMount[] = [];
  for (const [i, db] of databasesOf(spec).entries()) {
    const m = resolveMount(db, databaseField(spec, i), app, sts, what, ref.kind);
    if ("reason" in m) return m;
    mounts.push(m);
  }
  const ours = new Set([SIDECAR_CONTAINER, RESTORE_CONTAINER]);
  // Walship's own containers carry the hash annotation beside them; others of those names are not ours.
  const injected = sts.spec?.template?.metadata?.annotations?.[CONFIG_HASH_ANNOTATION] !== undefined;
  const clash = [...(injected ? [] : (podSpec?.initContainers ?? [])), ...containers].find((c) =>
    ours.has(c.name),
  );
  if (clash) {
    return {
      reason: "NameClash",
      field: workloadField(spec),
      message: `${what} already has a container named ${clash.name} not added by Walship`,
    };
  }
  // The sidecar's port must be free in the pod's network namespace: every app container's, and the
  // user's own native sidecars' (they run beside it); plain init containers have exited by then.
  const port = metricsPort(spec);
  const running = [
    ...containers,
    ...(podSpec?.initContainers ?? []).filter((c) => c.restartPolicy === "Always" && !ours.has(c.name)),
  ];
  for (const c of running) {
    const p = (c.ports ?? []).find((x) => x.containerPort === port && (x.protocol ?? "TCP") === "TCP");
    if (p) {
      return {
        reason: "PortConflict",
        field: "spec.sidecar.metricsPort",
        message:
          `container ${c.name} declares port ${port}${p.name ? ` (${p.name})` : ""}, where the walship sidecar ` +
          "would serve /metrics, /healthz and /status; set spec.sidecar.metricsPort to a free port",
      };
    }
  }
  return {
    appContainer: app.name,
    mounts,
    identity: appIdentity(podSpec, app.name),
    ...(fixedReplicaName(ref) ? { replicaName: fixedReplicaName(ref) } : {}),
  };
}

/** The app container's mount that holds database `db` (`field` names it in the spec). */
function resolveMount(
  db: DatabaseEntry,
  field: string,
  app: Container,
  sts: WorkloadObject,
  what: string,
  kind: WorkloadRef["kind"],
): DataMount | TargetProblem {
  const vol = db.volumeName;
  const inTemplates = (claimTemplates(sts) ?? []).some((t) => t.metadata?.name === vol);
  const inVolumes = (sts.spec?.template?.spec?.volumes ?? []).some((v) => v.name === vol);
  if (!inTemplates && !inVolumes) {
    return {
      reason: "VolumeNotFound",
      field: `${field}.volumeName`,
      message: `${what} has no ${kind === "StatefulSet" ? "volumeClaimTemplate or " : ""}volume named ${vol}`,
    };
  }
  const mount = (app.volumeMounts ?? []).find((m) => m.name === vol && !m.subPathExpr);
  if (!mount) {
    return {
      reason: "VolumeNotMounted",
      field: `${field}.volumeName`,
      message: `container ${app.name} does not mount volume ${vol} (without subPathExpr)`,
    };
  }
  const dir = mount.mountPath.replace(/\/+$/, "");
  // The schema refuses `.`/`..` segments; checked here too, so that no path can climb out of the volume.
  const normal = path.posix.normalize(db.path) === db.path;
  if (!normal || !db.path.startsWith(`${dir}/`)) {
    return {
      reason: "PathOutsideVolume",
      field: `${field}.path`,
      message: `${db.path} is not under ${mount.mountPath}, where container ${app.name} mounts ${vol}`,
    };
  }
  return {
    volumeName: vol,
    mountPath: mount.mountPath,
    ...(mount.subPath ? { subPath: mount.subPath } : {}),
  };
}

export function isTargetProblem(t: Target | TargetProblem): t is TargetProblem {
  return "reason" in t;
}

/**
 * The sidecar's resources unless `spec.sidecar.resources` says otherwise. Measured peaks (RSS,
 * docs/operator.md "Memory"): 180-190 MiB snapshotting a 1-4 GiB database, 240 MiB under a writer at
 * 27 MiB/s of rows; the limit leaves a third on top of the highest.
 */
export const DEFAULT_SIDECAR_RESOURCES = {
  requests: { cpu: "50m", memory: "128Mi" },
  limits: { memory: "384Mi" },
};

/**
 * The restore init container's and every restore Job's resources unless `spec.restoreResources` (or
 * a SqliteRestore's `spec.resources`) says otherwise. Measured peaks (docs/operator.md "Memory"):
 * 247-329 MiB from a file replica for 64 MiB to 4 GiB databases, 386 MiB for 1 GiB + 1 GiB of WAL
 * from MinIO; the memory does not grow with the database size.
 */
export const DEFAULT_RESTORE_RESOURCES = {
  requests: { cpu: "100m", memory: "256Mi" },
  limits: { memory: "512Mi" },
};

/**
 * The env every Walship container gets (no secret: keys come as files): POD_NAME, the name of the
 * replica the config's `<path>/${POD_NAME}` names, which is the pod's own name, or `replicaName`
 * when the workload fixes one (a Deployment's, workload.ts).
 */
export function buildEnv(replicaName?: string): EnvVar[] {
  if (replicaName !== undefined) return [{ name: "POD_NAME", value: replicaName }];
  return [{ name: "POD_NAME", valueFrom: { fieldRef: { fieldPath: "metadata.name" } } }];
}

/**
 * The sidecar's identity in its single-writer claims (src/replicator/claim.ts): the pod's namespace,
 * name and uid (a restarted sidecar of the same pod takes its own claim back at once; a replacement
 * pod, or a pod of the same name elsewhere, waits), and the SqliteReplica, to name in the other's
 * status.
 */
export function claimEnv(): EnvVar[] {
  const field = (fieldPath: string) => ({ valueFrom: { fieldRef: { fieldPath } } });
  return [
    { name: "WALSHIP_POD_NAMESPACE", ...field("metadata.namespace") },
    { name: "WALSHIP_POD_NAME", ...field("metadata.name") },
    { name: "WALSHIP_POD_UID", ...field("metadata.uid") },
    { name: "WALSHIP_SQLITEREPLICA", ...field(`metadata.annotations['${SQLITE_REPLICA_LABEL}']`) },
  ];
}

/**
 * Each destination's projected volume of the Secret keys it references (destinationCredentials), one
 * file each (the kubelet updates them when a Secret changes). Destinations without any get none.
 */
export function credentialVolumes(spec: SqliteReplicaSpec): Volume[] {
  return spec.destinations.flatMap((d) => {
    const creds = destinationCredentials(d);
    if (creds.length === 0) return [];
    return [
      {
        name: credentialsVolumeName(d.name),
        projected: {
          sources: creds.map((c) => ({
            secret: { name: c.ref.name, items: [{ key: c.ref.key, path: c.file }] },
          })),
        },
      },
    ];
  });
}

/** The read-only mounts of `credentialVolumes`. */
export function credentialMounts(spec: SqliteReplicaSpec): VolumeMount[] {
  return spec.destinations
    .filter((d) => destinationCredentials(d).length > 0)
    .map((d) => ({
      name: credentialsVolumeName(d.name),
      mountPath: `${CREDENTIALS_DIR}/${d.name}`,
      readOnly: true,
    }));
}

/** The data mounts, each once (databases on one mount share it). */
export function dataMounts(target: Pick<Target, "mounts">): VolumeMount[] {
  const seen = new Set<string>();
  const out: VolumeMount[] = [];
  for (const m of target.mounts) {
    const key = `${m.volumeName}\n${m.mountPath}\n${m.subPath ?? ""}`;
    if (seen.has(key)) continue;
    seen.add(key);
    out.push({ name: m.volumeName, mountPath: m.mountPath, ...(m.subPath ? { subPath: m.subPath } : {}) });
  }
  return out;
}

function buildMounts(spec: SqliteReplicaSpec, target: Target): VolumeMount[] {
  return [
    ...dataMounts(target),
    { name: CONFIG_VOLUME, mountPath: CONFIG_DIR, readOnly: true },
    ...spec.destinations
      .filter((d) => d.file)
      .map((d) => ({ name: fileVolumeName(d.name), mountPath: `${FILE_DESTINATIONS_DIR}/${d.name}` })),
    ...credentialMounts(spec),
  ];
}

/** The resources of the restore init container and the restore Jobs. */
export function restoreResources(spec: SqliteReplicaSpec): Container["resources"] {
  return (spec.restoreResources as Container["resources"]) ?? DEFAULT_RESTORE_RESOURCES;
}

/**
 * The replicator as a native sidecar. No readinessProbe: a native sidecar's readiness counts toward
 * the pod's, so an unreachable bucket would take the app out of its Service; replication health is
 * the SqliteReplica's status, the metrics and the alerts instead. A startupProbe on /healthz holds
 * the app until the replicator serves (the kubelet starts the next container once a sidecar's
 * startupProbe passes), and a livenessProbe restarts a replicator that stops answering.
 */
export function buildSidecar(spec: SqliteReplicaSpec, target: Target, opts: BuildOptions = {}): Container {
  const port = metricsPort(spec);
  const healthz = { httpGet: { path: "/healthz", port: HTTP_PORT_NAME } };
  return {
    ...walshipContainer(spec, target.identity, opts, {
      name: SIDECAR_CONTAINER,
      command: ["walship", "replicate", "-config", CONFIG_PATH],
      env: [...buildEnv(target.replicaName), ...claimEnv()],
      volumeMounts: buildMounts(spec, target),
      resources: sidecarResources(spec),
    }),
    restartPolicy: "Always",
    ports: [{ name: HTTP_PORT_NAME, containerPort: port, protocol: "TCP" }],
    startupProbe: { ...healthz, periodSeconds: 1, timeoutSeconds: 3, failureThreshold: 120 },
    livenessProbe: { ...healthz, periodSeconds: 10, timeoutSeconds: 5, failureThreshold: 6 },
  };
}

/** The sidecar's resources. */
export function sidecarResources(spec: SqliteReplicaSpec): Container["resources"] {
  return (spec.sidecar?.resources as Container["resources"]) ?? DEFAULT_SIDECAR_RESOURCES;
}

/**
 * The init container of the restore-on-start policy: IfReplicaExists restores the database when it
 * is missing and a replica exists; RefuseIfReplicaExists restores nothing and fails (exit 1,
 * WALSHIP_ERR_EXISTS) in that case, so the app does not start empty; None has no init container.
 */
export function buildRestoreContainer(
  spec: SqliteReplicaSpec,
  target: Target,
  opts: BuildOptions = {},
): Container | undefined {
  const flags: Record<SqliteReplicaSpec["restoreOnStart"], string[] | undefined> = {
    IfReplicaExists: ["-if-db-not-exists", "-if-replica-exists"],
    RefuseIfReplicaExists: ["-refuse-if-replica-exists"],
    None: undefined,
  };
  const policy = flags[spec.restoreOnStart];
  if (!policy) return undefined;
  return walshipContainer(spec, target.identity, opts, {
    name: RESTORE_CONTAINER,
    // One run for every database, in the spec's order (the CLI takes several paths with -config).
    command: [
      "walship",
      "restore",
      "-config",
      CONFIG_PATH,
      ...policy,
      ...databasesOf(spec).map((d) => d.path),
    ],
    env: buildEnv(target.replicaName),
    volumeMounts: buildMounts(spec, target),
    resources: restoreResources(spec),
  });
}

/** The volumes Walship adds: the config, each file destination's claim, each S3 destination's keys. */
export function buildVolumes(name: string, spec: SqliteReplicaSpec): Volume[] {
  return [
    { name: CONFIG_VOLUME, configMap: { name: configMapName(name) } },
    ...spec.destinations
      .filter((d) => d.file)
      .map((d) => ({
        name: fileVolumeName(d.name),
        persistentVolumeClaim: { claimName: d.file?.claimName ?? "" },
      })),
    ...credentialVolumes(spec),
  ];
}

/** The server-side-apply configuration of the workload: only the fields Walship owns. */
export function buildApplyPatch(
  sts: { name: string; namespace: string; kind?: WorkloadRef["kind"] },
  sqliteReplicaName: string,
  spec: SqliteReplicaSpec,
  target: Target,
  hash: string,
  opts: BuildOptions = {},
): StatefulSet {
  const initContainers: Container[] = [];
  const restore = buildRestoreContainer(spec, target, opts);
  if (restore) initContainers.push(restore);
  initContainers.push(buildSidecar(spec, target, opts));
  return {
    apiVersion: "apps/v1",
    kind: sts.kind ?? "StatefulSet",
    metadata: { name: sts.name, namespace: sts.namespace },
    spec: {
      template: {
        metadata: { annotations: { [CONFIG_HASH_ANNOTATION]: hash } },
        spec: { initContainers, volumes: buildVolumes(sqliteReplicaName, spec) },
      },
    } as unknown as StatefulSet["spec"],
  };
}

/** The apply configuration that owns nothing: applying it removes everything Walship added. */
export function removalPatch(sts: {
  name: string;
  namespace: string;
  kind?: WorkloadRef["kind"];
}): StatefulSet {
  return {
    apiVersion: "apps/v1",
    kind: sts.kind ?? "StatefulSet",
    metadata: { name: sts.name, namespace: sts.namespace },
  };
}

/** True when the live workload carries Walship's injection with this hash. */
export function isInjected(sts: WorkloadObject, hash: string): boolean {
  const t = sts.spec?.template;
  return (
    t?.metadata?.annotations?.[CONFIG_HASH_ANNOTATION] === hash &&
    (t.spec?.initContainers ?? []).some((c) => c.name === SIDECAR_CONTAINER)
  );
}
