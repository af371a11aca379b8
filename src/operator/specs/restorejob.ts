/**
 * The Jobs of a SqliteRestore, pure. Each runs our image; all but `plan` on the claim that holds the
 * database:
 *
 * - `plan`: `walship restore -dry-run` with the restore Job's config, env and destination volumes but
 *   no data claim: checks that the target can be restored (a snapshot at or before the time, the
 *   generation and index exist, the bucket answers) before anything is scaled or written. Its
 *   termination message is the CLI's `restore plan` line, or its error.
 * - `restore`: `walship restore -o <staged file>` from the SqliteReplica's config, as the source pod
 *   (`POD_NAME` is that pod's name, so `<path>/${POD_NAME}` is its replica). The CLI restores to
 *   `<staged>.tmp`, runs `PRAGMA integrity_check`, then renames it to the staged file; the database
 *   itself is not touched. InPlace stages beside the database (`<db>.restore-<name>`); NewClaim
 *   restores to `/restore/<db file name>` on the new claim. The container's termination message is
 *   the CLI's last JSON log lines, from which the operator reads the restored position.
 * - `swap` (InPlace): moves the database and its -wal/-shm to `<db>.pre-restore-<name>` and the
 *   staged file into place; with `previousDatabase: Delete` it then removes the moved files.
 *   Idempotent: a re-run after a killed pod finishes the move.
 * - `rollback` (InPlace, after a failure): puts `<db>.pre-restore-<name>` (and -wal/-shm) back if it
 *   was moved, and removes the staged files.
 *
 * Pods are `restartPolicy: Never`; a killed pod is replaced (backoffLimit), a CLI error (exit 1 or 2)
 * fails the Job at once (podFailurePolicy), and `activeDeadlineSeconds` is the spec's timeout.
 */
import { createHash } from "node:crypto";
import path from "node:path";
import type { SingleDatabaseSpec, SqliteRestoreSpec } from "../../api/v1alpha1/index.ts";
import { tryParseGoDuration } from "../../shared/duration.ts";
import { hex8 } from "../../shared/format.ts";
import type { Container, EnvVar, Volume, VolumeMount } from "../kube/types.ts";
import { type BuildOptions, ownerReference, walshipContainer } from "./common.ts";
import { asAppPod, destinationAccess } from "./jobs.ts";
import { CONFIG_PATH, MANAGED_BY_LABELS } from "./names.ts";
import type { AppIdentity } from "./security.ts";
import { buildEnv, restoreResources } from "./statefulset.ts";
import { claimTemplates, type WorkloadObject } from "./workload.ts";

/** The Jobs of a SqliteRestore, one per step (see the file's comment). */
export type JobStep = "plan" | "restore" | "swap" | "rollback";

export const SQLITE_RESTORE_LABEL = "walship.dev/sqliterestore";
/** On the NewClaim claim: the uid of the SqliteRestore that created it (the only one that writes it). */
export const SQLITE_RESTORE_UID_ANNOTATION = "walship.dev/sqliterestore-uid";
export const RESTORE_STEP_LABEL = "walship.dev/restore-step";
export const RESTORE_JOB_CONTAINER = "walship-restore";
/** The volume name of the database's claim in a restore Job. */
export const RESTORE_DATA_VOLUME = "walship-data";
/** Where NewClaim mounts the new claim. */
export const NEW_CLAIM_DIR = "/restore";
/** CLI exit codes that mean "do not retry" (errors and usage). */
export const NO_RETRY_EXIT_CODES = [1, 2];

export interface RestoreJobInput {
  step: JobStep;
  restore: { name: string; namespace: string; uid: string };
  spec: SqliteRestoreSpec;
  /** The SqliteReplica's spec narrowed to the database restored (withDatabase). */
  replica: SingleDatabaseSpec;
  /** The SqliteReplica's workload (StatefulSet or Deployment). */
  sts: WorkloadObject;
  /** The replica's name: the pod's (InPlace, also whose claim is restored), or a Deployment's. */
  pod: string;
  /** The claim to mount: the pod's (InPlace) or the new one (NewClaim). */
  claimName: string;
  /** The app container's mount of the database volume (path and subPath). */
  mount: { mountPath: string; subPath?: string };
  /** The app container's effective user and group: every Job runs as them (security.ts). */
  identity: AppIdentity;
}

/** `<restore>-<step>`, shortened with a hash to stay a valid 63-character label value. */
export function restoreJobName(restoreName: string, step: JobStep): string {
  const name = `${restoreName}-${step}`;
  if (name.length <= 63) return name;
  const h = createHash("sha256").update(name).digest("hex").slice(0, 8);
  return `${restoreName.slice(0, 63 - step.length - 10).replace(/[-.]+$/, "")}-${h}-${step}`;
}

/** What a new claim copies from the database's claim when the spec does not say. */
export interface ClaimShape {
  spec?: {
    accessModes?: string[];
    storageClassName?: string;
    resources?: { requests?: Record<string, unknown> };
  };
}

/**
 * The NewClaim PersistentVolumeClaim; size, class and access modes default to the StatefulSet's
 * template, or to the claim the database is on (`sourceClaim`, a Deployment's), else 1Gi.
 */
export function buildNewClaim(
  input: Omit<RestoreJobInput, "step" | "pod" | "claimName" | "mount" | "identity"> & {
    sourceClaim?: ClaimShape | undefined;
  },
) {
  const nc = input.spec.newClaim;
  const tmpl: ClaimShape | undefined =
    (claimTemplates(input.sts) ?? []).find((t) => t.metadata?.name === input.replica.database.volumeName) ??
    input.sourceClaim;
  const size = nc?.size ?? tmpl?.spec?.resources?.requests?.storage ?? "1Gi";
  const storageClassName = nc?.storageClassName ?? tmpl?.spec?.storageClassName;
  return {
    apiVersion: "v1",
    kind: "PersistentVolumeClaim",
    metadata: {
      name: nc?.name ?? "",
      namespace: input.restore.namespace,
      labels: { ...MANAGED_BY_LABELS, [SQLITE_RESTORE_LABEL]: input.restore.name },
      annotations: { [SQLITE_RESTORE_UID_ANNOTATION]: input.restore.uid },
    },
    spec: {
      accessModes: tmpl?.spec?.accessModes ?? ["ReadWriteOnce"],
      ...(storageClassName ? { storageClassName } : {}),
      resources: { requests: { storage: String(size) } },
    },
  };
}

/** Runs the CLI, prints its output, and keeps its last lines as the termination message. */
const RUN_CLI = [
  'out=$(walship restore -log-format json "$@" 2>&1); rc=$?',
  'printf "%s\\n" "$out" >&2',
  // The runtime provides the file; never create one (a runtime without it has no message).
  'if [ -f /dev/termination-log ]; then printf "%s\\n" "$out" | tail -c 3500 > /dev/termination-log; fi',
  'exit "$rc"',
];

/** The restore command: clears old staged files, then runs the CLI. */
const RESTORE_SCRIPT = ['S="$1"; shift', 'rm -f "$S" "$S.tmp" "$S.tmp-wal" "$S.tmp-shm"', ...RUN_CLI].join(
  "\n",
);

/** The plan command: the CLI with -dry-run; it touches no file. */
const PLAN_SCRIPT = RUN_CLI.join("\n");

/**
 * Database, backup, staged, policy: move the database (and -wal, -shm) aside, then the staged file
 * in; with policy Delete, remove the moved files once the staged file is in place.
 */
const SWAP_SCRIPT = [
  "set -eu",
  'D="$1"; B="$2"; S="$3"; P="$4"',
  'if [ -e "$S" ]; then',
  '  if [ -e "$D" ]; then mv "$D" "$B"; fi',
  '  for x in -wal -shm; do if [ -e "$D$x" ]; then mv "$D$x" "$B$x"; fi; done',
  '  mv "$S" "$D"',
  "fi",
  'test -e "$D"',
  'if [ "$P" = Delete ]; then',
  '  rm -f "$B" "$B-wal" "$B-shm"',
  '  echo "swapped: $D (previous database deleted)"',
  "else",
  '  echo "swapped: $D (previous database kept as $B)"',
  "fi",
].join("\n");

/** Database, backup, staged: put the backup back if the database was moved, drop the staged files. */
const ROLLBACK_SCRIPT = [
  "set -eu",
  'D="$1"; B="$2"; S="$3"',
  'if [ -e "$B" ]; then',
  // A -wal/-shm still at the database's name was never moved: it is the original's; keep it.
  '  for x in -wal -shm; do if [ -e "$B$x" ]; then mv -f "$B$x" "$D$x"; fi; done',
  '  mv -f "$B" "$D"',
  "fi",
  'rm -f "$S" "$S.tmp" "$S.tmp-wal" "$S.tmp-shm"',
  'echo "rolled back: $D"',
].join("\n");

/** The spec's timeout as a Job's activeDeadlineSeconds (at least 1). */
export function jobDeadlineSeconds(spec: Pick<SqliteRestoreSpec, "timeout">): number {
  const d = tryParseGoDuration(spec.timeout);
  return "ms" in d ? Math.max(1, Math.ceil(d.ms / 1000)) : 3600;
}

function targetFlags(spec: SqliteRestoreSpec): string[] {
  const t = spec.target;
  const out: string[] = [];
  if (spec.destination) out.push("-replica", spec.destination);
  if (t?.timestamp) out.push("-timestamp", t.timestamp);
  if (t?.generation) out.push("-generation", t.generation);
  if (t?.index !== undefined) out.push("-index", hex8(t.index));
  return out;
}

/** The database, backup and staged paths as the Job sees them. */
export function restorePaths(input: Pick<RestoreJobInput, "restore" | "spec" | "replica">): {
  db: string;
  backup: string;
  staged: string;
} {
  const db = input.replica.database.path;
  const staged =
    input.spec.mode === "NewClaim"
      ? `${NEW_CLAIM_DIR}/${path.posix.basename(db)}`
      : `${db}.restore-${input.restore.name}`;
  return { db, backup: `${db}.pre-restore-${input.restore.name}`, staged };
}

function command(input: RestoreJobInput): string[] {
  const p = restorePaths(input);
  const sql = input.spec.verify?.sql;
  switch (input.step) {
    case "plan":
      return [
        "sh",
        "-c",
        PLAN_SCRIPT,
        "plan",
        "-dry-run",
        "-config",
        CONFIG_PATH,
        ...targetFlags(input.spec),
        p.db,
      ];
    case "restore":
      return [
        "sh",
        "-c",
        RESTORE_SCRIPT,
        "restore",
        p.staged,
        "-config",
        CONFIG_PATH,
        "-o",
        p.staged,
        ...targetFlags(input.spec),
        ...(sql ? ["-verify-sql", sql] : []),
        p.db,
      ];
    case "swap":
      return ["sh", "-c", SWAP_SCRIPT, "swap", p.db, p.backup, p.staged, input.spec.previousDatabase];
    case "rollback":
      return ["sh", "-c", ROLLBACK_SCRIPT, "rollback", p.db, p.backup, p.staged];
  }
}

/** The Job of one step. */
export function buildRestoreJob(input: RestoreJobInput, opts: BuildOptions = {}) {
  const { restore, replica, sts, step } = input;
  const podSpec = sts.spec?.template?.spec;
  const labels = { ...MANAGED_BY_LABELS, [SQLITE_RESTORE_LABEL]: restore.name, [RESTORE_STEP_LABEL]: step };
  const newClaim = input.spec.mode === "NewClaim";
  const dataMount: VolumeMount = newClaim
    ? { name: RESTORE_DATA_VOLUME, mountPath: NEW_CLAIM_DIR }
    : {
        name: RESTORE_DATA_VOLUME,
        mountPath: input.mount.mountPath,
        ...(input.mount.subPath ? { subPath: input.mount.subPath } : {}),
      };
  // The plan reads only the destinations: it must not wait for (or hold) the app's claim.
  const mounts: VolumeMount[] = step === "plan" ? [] : [dataMount];
  const volumes: Volume[] =
    step === "plan"
      ? []
      : [{ name: RESTORE_DATA_VOLUME, persistentVolumeClaim: { claimName: input.claimName } }];
  let env: EnvVar[] | undefined;
  if (step === "restore" || step === "plan") {
    const access = destinationAccess(replica, input.spec.sqliteReplicaName);
    mounts.push(...access.mounts);
    volumes.push(...access.volumes);
    // The source pod's name, so the config's <path>/${POD_NAME} is that pod's replica.
    env = buildEnv().map((e) => (e.name === "POD_NAME" ? { name: "POD_NAME", value: input.pod } : e));
  }
  const container = walshipContainer(replica, input.identity, opts, {
    name: RESTORE_JOB_CONTAINER,
    command: command(input),
    ...(env ? { env } : {}),
    volumeMounts: mounts,
    resources: (input.spec.resources as Container["resources"]) ?? restoreResources(replica),
  });
  return {
    apiVersion: "batch/v1",
    kind: "Job",
    metadata: {
      name: restoreJobName(restore.name, step),
      namespace: restore.namespace,
      labels,
      ownerReferences: [ownerReference("SqliteRestore", restore)],
    },
    spec: {
      activeDeadlineSeconds: jobDeadlineSeconds(input.spec),
      backoffLimit: 3,
      podFailurePolicy: {
        rules: [
          {
            action: "FailJob",
            onExitCodes: {
              containerName: RESTORE_JOB_CONTAINER,
              operator: "In",
              values: NO_RETRY_EXIT_CODES,
            },
          },
          { action: "Ignore", onPodConditions: [{ type: "DisruptionTarget", status: "True" }] },
        ],
      },
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
