/**
 * The restore drill Job of a SqliteReplica, pure. It runs `walship drill` with the sidecar's config,
 * env, destination volumes and credentials, as the pod whose replica it drills (`POD_NAME`), and
 * restores into an emptyDir: it mounts no volume of the app, so a drill can never write the
 * database. The CLI writes its one-line report to /dev/termination-log, where the operator reads it
 * from the pod's status (no pod logs, no extra RBAC).
 *
 * One attempt (backoffLimit 0: a drill that fails is a finding to report, not to retry away), a
 * deadline (spec.drills.timeout), and the Job is removed an hour after it finished (by then the
 * operator has read it; status.drills keeps the result).
 */
import { createHash } from "node:crypto";
import type { SqliteReplicaSpec } from "../../api/v1alpha1/index.ts";
import { tryParseGoDuration } from "../../shared/duration.ts";
import type { Volume, VolumeMount } from "../kube/types.ts";
import { type BuildOptions, ownerReference, walshipContainer } from "./common.ts";
import { asAppPod, destinationAccess } from "./jobs.ts";
import { CONFIG_PATH, MANAGED_BY_LABELS, SQLITE_REPLICA_LABEL } from "./names.ts";
import type { AppIdentity } from "./security.ts";
import { buildEnv, restoreResources } from "./statefulset.ts";
import type { WorkloadObject } from "./workload.ts";

export const DRILL_LABEL = "walship.dev/drill";
export const DRILL_CONTAINER = "walship-drill";
export const DRILL_SCRATCH_VOLUME = "walship-scratch";
export const DRILL_SCRATCH_DIR = "/var/lib/walship/drill";
/** How long a finished drill Job is kept. */
export const DRILL_JOB_TTL_SECONDS = 3600;

export interface DrillJobInput {
  name: string;
  replica: { name: string; namespace: string; uid: string };
  spec: SqliteReplicaSpec;
  /** The SqliteReplica's workload: its pod template gives the Job's pod-level security and placement. */
  workload: WorkloadObject;
  /** The pod whose replica is drilled (`<path>/<pod>` in the config). */
  pod: string;
  /** The app container's user and group: the drill runs as them, as the sidecar does. */
  identity: AppIdentity;
  /** The annotation value this drill answers, when on demand. */
  request?: string;
}

/**
 * `<replica>-drill-<key>`: `key` is the schedule slot (`202612031900`) or `r<hash>` of the request, so
 * that creating it again is idempotent. Shortened with a hash to stay a valid 63-character label value.
 */
export function drillJobName(replicaName: string, key: string): string {
  const name = `${replicaName}-drill-${key}`;
  if (name.length <= 63) return name;
  const h = createHash("sha256").update(name).digest("hex").slice(0, 8);
  return `${replicaName.slice(0, 63 - key.length - 16).replace(/[-.]+$/, "")}-${h}-drill-${key}`;
}

/** The Job-name key of a schedule slot: its UTC minute, `yyyymmddhhmm`. */
export function slotKey(slot: Date): string {
  return slot.toISOString().slice(0, 16).replace(/[-T:]/g, "");
}

/** The Job-name key of an on-demand request: `r` and 8 hex digits of its annotation value. */
export function requestKey(request: string): string {
  return `r${createHash("sha256").update(request).digest("hex").slice(0, 8)}`;
}

/** The drill's deadline in seconds (spec.drills.timeout, default 1h). */
export function drillDeadlineSeconds(spec: SqliteReplicaSpec): number {
  const d = tryParseGoDuration(spec.drills?.timeout ?? "1h");
  return "ms" in d ? Math.max(1, Math.ceil(d.ms / 1000)) : 3600;
}

/** `walship drill` with the spec's options. */
export function drillCommand(spec: SqliteReplicaSpec): string[] {
  const d = spec.drills;
  return [
    "walship",
    "drill",
    "-config",
    CONFIG_PATH,
    "-scratch",
    DRILL_SCRATCH_DIR,
    "-result-file",
    "/dev/termination-log",
    "-log-format",
    "json",
    ...(d?.pointInTime ? ["-point-in-time"] : []),
    ...(d?.verifyQuery ? ["-verify-sql", d.verifyQuery] : []),
    ...(d?.destinations?.length ? ["-replicas", d.destinations.join(",")] : []),
  ];
}

export function buildDrillJob(input: DrillJobInput, opts: BuildOptions = {}) {
  const { spec, replica } = input;
  const podSpec = input.workload.spec?.template?.spec;
  const labels = { ...MANAGED_BY_LABELS, [SQLITE_REPLICA_LABEL]: replica.name, [DRILL_LABEL]: "true" };
  const access = destinationAccess(spec, replica.name);
  // The scratch emptyDir second, after the config: the mounts and volumes of the app are never here.
  const mounts: VolumeMount[] = [
    access.mounts[0]!,
    { name: DRILL_SCRATCH_VOLUME, mountPath: DRILL_SCRATCH_DIR },
    ...access.mounts.slice(1),
  ];
  const volumes: Volume[] = [
    access.volumes[0]!,
    {
      name: DRILL_SCRATCH_VOLUME,
      emptyDir:
        spec.drills?.scratchSizeLimit !== undefined
          ? { sizeLimit: String(spec.drills.scratchSizeLimit) }
          : {},
    },
    ...access.volumes.slice(1),
  ];
  const container = walshipContainer(spec, input.identity, opts, {
    name: DRILL_CONTAINER,
    command: drillCommand(spec),
    env: buildEnv(input.pod),
    volumeMounts: mounts,
    resources: restoreResources(spec),
  });
  return {
    apiVersion: "batch/v1",
    kind: "Job",
    metadata: {
      name: input.name,
      namespace: replica.namespace,
      labels,
      ...(input.request ? { annotations: { "walship.dev/drill-request": input.request } } : {}),
      ownerReferences: [ownerReference("SqliteReplica", replica)],
    },
    spec: {
      activeDeadlineSeconds: drillDeadlineSeconds(spec),
      backoffLimit: 0,
      ttlSecondsAfterFinished: DRILL_JOB_TTL_SECONDS,
      template: {
        metadata: { labels },
        spec: {
          restartPolicy: "Never",
          ...asAppPod(podSpec),
          containers: [container],
          volumes,
        },
      },
    },
  };
}
