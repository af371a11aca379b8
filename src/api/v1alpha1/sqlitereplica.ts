/**
 * SqliteReplica (walship.dev/v1alpha1, namespaced): replicate one SQLite database of a StatefulSet's
 * (or a one-replica Deployment's) pods to one or more destinations. These zod schemas are the single source of the TypeScript types,
 * of the reconcile-time validation and of crds/walship.dev_sqlitereplicas.yaml.
 */
import { z } from "zod";
import { tryParseGoDuration } from "../../shared/duration.ts";
import {
  Condition,
  ConfigText,
  cel,
  DnsLabel,
  DnsSubdomain,
  Duration,
  ResourceRequirements,
} from "./common.ts";
import { Destination } from "./destinations.ts";
import { DrillRun, DrillStatus, DrillsSpec } from "./drills.ts";

export * from "./destinations.ts";
export * from "./drills.ts";

export const SQLITE_REPLICA_KIND = "SqliteReplica";
export const SQLITE_REPLICA_PLURAL = "sqlitereplicas";

/** The sidecar's HTTP port (/metrics, /healthz, /readyz, /status) when `sidecar.metricsPort` is unset. */
export const DEFAULT_METRICS_PORT = 9090;
export const DEFAULT_SYNC_INTERVAL = "1s";
export const DEFAULT_RETENTION = "24h";
/**
 * `walship.dev/paused: "true"` on a SqliteReplica pauses its replication: the operator removes the
 * replicator (sidecar and restore init container) from the StatefulSet, so its pods roll without it,
 * and reports phase Paused; removing the annotation injects it again (the pods roll once more). Set
 * and removed by `kubectl walship pause|resume`.
 */
export const PAUSED_ANNOTATION = "walship.dev/paused";

/** A Linux capability name as Kubernetes takes it (`NET_BIND_SERVICE`, `CAP_CHOWN`, `ALL`). */
const Capability = z
  .string()
  .min(1)
  .max(64)
  .regex(/^[A-Z][A-Z0-9_]*$/, "must be a capability name such as NET_BIND_SERVICE or ALL");

/** A Linux user or group id, as Kubernetes accepts them (0 to 2^31-1). */
const LinuxId = z.int().min(0).max(2147483647);

/** The subset of a container securityContext that can be overridden for the sidecar. */
export const SidecarSecurityContext = z.object({
  runAsUser: LinuxId.optional(),
  runAsGroup: LinuxId.optional(),
  runAsNonRoot: z.boolean().optional(),
  readOnlyRootFilesystem: z.boolean().optional(),
  allowPrivilegeEscalation: z.boolean().optional(),
  capabilities: z
    .object({
      add: z.array(Capability).max(64).optional(),
      drop: z.array(Capability).max(64).optional(),
    })
    .optional(),
  seccompProfile: z
    .object({
      type: z.enum(["RuntimeDefault", "Localhost", "Unconfined"]),
      localhostProfile: z
        .string()
        .min(1)
        .max(1024)
        .regex(/^[-_./a-zA-Z0-9]+$/, "must be a relative file path of letters, digits, '-', '_', '.' and '/'")
        .optional(),
    })
    .optional(),
});

/** An image reference: `[registry/]repository[:tag][@digest]`, no whitespace or control characters. */
const ImageRef = z
  .string()
  .min(1)
  .max(512)
  .regex(
    /^[a-z0-9]([-a-z0-9._:/]*[a-z0-9])?(:[\w][\w.-]{0,127})?(@[a-z0-9]+:[a-f0-9]{32,})?$/,
    "must be an image reference such as registry.example.com/walship:0.1.0",
  );

export const Sidecar = z.object({
  image: ImageRef.optional().describe("The walship image; the operator's default when unset."),
  imagePullPolicy: z.enum(["Always", "IfNotPresent", "Never"]).optional(),
  resources: ResourceRequirements.optional().describe(
    "The sidecar's resources; default requests cpu 50m, memory 128Mi, limit memory 384Mi.",
  ),
  securityContext: SidecarSecurityContext.optional().describe(
    "Merged field by field over the restricted securityContext that the sidecar, the restore container " +
      "and the restore Jobs get as the app container's user and group (runAsUser, runAsGroup); a " +
      "result that is not Pod Security restricted is reported in the Restricted condition.",
  ),
  metricsPort: z
    .int()
    .min(1)
    .max(65535)
    .default(DEFAULT_METRICS_PORT)
    .describe("The sidecar's HTTP port: /metrics, /healthz, /readyz, /status."),
  claimTTL: Duration.refine((v) => {
    const d = tryParseGoDuration(v);
    return !("ms" in d) || d.ms === 0 || d.ms >= 1000;
  }, "must be 0s (no single-writer claim) or at least 1s")
    .optional()
    .describe(
      "How long each destination's single-writer claim (and Lease) lasts unless renewed (the config's " +
        "claim-ttl); renewed every third of it. Default 30s; 0s turns fencing off.",
    ),
  probeInterval: Duration.optional().describe(
    "How often a failing destination self-test is tried again (the config's probe-interval). Default 1m; " +
      "0s turns the self-test off.",
  ),
});

/**
 * What the init container does before the app starts: restore a missing database from a replica
 * (IfReplicaExists), refuse to start while the database is missing and a replica exists
 * (RefuseIfReplicaExists: the pod stays in Init until someone restores it), or nothing (None).
 */
export const RestoreOnStart = z.enum(["IfReplicaExists", "RefuseIfReplicaExists", "None"]);

/** The kinds of workload a SqliteReplica can replicate. */
export const WorkloadKind = z.enum(["StatefulSet", "Deployment"]);

/**
 * The workload whose pods hold the database, in the SqliteReplica's namespace. A Deployment is
 * accepted with at most one replica and the Recreate strategy, and the database on a volume backed by
 * a PersistentVolumeClaim (src/operator/specs/deployment.ts says why each is needed).
 */
export const WorkloadRef = z.object({
  kind: WorkloadKind.describe("StatefulSet or Deployment."),
  name: DnsSubdomain.describe("The workload's name, in this namespace."),
});

/** How many databases one SqliteReplica may list. */
export const MAX_DATABASES = 16;

const databaseShape = {
  path: ConfigText.min(2)
    .max(1024)
    .regex(/^\/.*[^/]$/, "must be an absolute file path")
    .regex(/^(\/[^/]+)+$/, "must not contain '//'")
    .describe("The database file as the app container sees it, e.g. /data/app.db."),
  volumeName: DnsLabel.describe(
    "The volume that holds the database: a volumeClaimTemplate or a pod volume of the workload. " +
      "The app container must mount it at a directory above the path.",
  ),
};

const noDotSegments = {
  rule: "!self.path.matches('/[.][.]?(/|$)')",
  message: "path must not contain '.' or '..' segments",
  fieldPath: ".path",
  check: (d: { path: string }) => !/\/\.\.?(\/|$)/.test(d.path),
};

/** The one database of `spec.database`. */
export const DatabaseSpec = cel(z.object(databaseShape), [noDotSegments]);

/** One database of `spec.databases`: named, for its replica path, its status and SqliteRestore. */
export const NamedDatabaseSpec = cel(
  z.object({
    name: DnsLabel.max(40).describe(
      "The database's name: its replica's path below each destination's is <path>/<pod>/<name>.",
    ),
    ...databaseShape,
  }),
  [noDotSegments],
);

export const SqliteReplicaSpec = cel(
  z.object({
    statefulSetName: DnsSubdomain.optional().describe(
      "The StatefulSet, in this namespace, whose pods hold the database; or set workloadRef instead.",
    ),
    workloadRef: WorkloadRef.optional().describe(
      "The StatefulSet or Deployment whose pods hold the database; instead of statefulSetName.",
    ),
    database: DatabaseSpec.optional().describe(
      "The database to replicate; or list several in databases instead.",
    ),
    databases: z
      .array(NamedDatabaseSpec)
      .min(1)
      .max(MAX_DATABASES)
      .meta({ "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"] })
      .optional()
      .describe(
        "Several databases of the same pods, instead of database: each is replicated under its own " +
          "name below every destination's path (<path>/<pod>/<name>), restored on start, and reported " +
          "in status.databases; a SqliteRestore names the one it restores.",
      ),
    appContainer: DnsLabel.optional().describe(
      "The container that uses the database; the first one when unset.",
    ),
    destinations: z
      .array(Destination)
      .min(1)
      .max(8)
      .meta({ "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"] })
      .describe("Where the WAL goes. Each destination keeps its own position."),
    syncInterval: Duration.default(DEFAULT_SYNC_INTERVAL).describe("Upload the WAL at most this often."),
    snapshotInterval: Duration.optional().describe(
      "Take a snapshot this often; otherwise only per generation and for retention.",
    ),
    retention: Duration.default(DEFAULT_RETENTION).describe(
      "Keep snapshots and the WAL after them this long; 0s keeps everything.",
    ),
    restoreOnStart: RestoreOnStart.default("IfReplicaExists").describe(
      "IfReplicaExists: before the app starts, restore the database when the file is missing and a " +
        "replica exists. RefuseIfReplicaExists: restore nothing, but keep the pod from starting (its init " +
        "container fails) while the file is missing and a replica exists, so the app never starts empty " +
        "over its backups. None: no init container.",
    ),
    sidecar: Sidecar.optional().describe("Overrides for the replicator sidecar."),
    restoreResources: ResourceRequirements.optional().describe(
      "Resources of the restore init container and of every SqliteRestore Job of this SqliteReplica " +
        "(a SqliteRestore's spec.resources overrides it); default requests cpu 100m, memory 256Mi, " +
        "limit memory 512Mi.",
    ),
    drills: DrillsSpec.optional().describe(
      "Restore drills: a Job restores each destination into scratch space (never the app's volume) on " +
        "a schedule or on demand, checks it, and records the result in status.drills.",
    ),
  }),
  [
    {
      rule: "has(self.statefulSetName) != has(self.workloadRef)",
      message: "set exactly one of statefulSetName or workloadRef",
      check: (spec) => (spec.statefulSetName !== undefined) !== (spec.workloadRef !== undefined),
    },
    {
      rule: "has(self.database) != has(self.databases)",
      message: "set exactly one of database or databases",
      check: (spec) => (spec.database !== undefined) !== (spec.databases !== undefined),
    },
    {
      rule: "!has(self.databases) || self.databases.all(a, self.databases.exists_one(b, b.path == a.path))",
      message: "database paths must be unique",
      fieldPath: ".databases",
      check: (spec) =>
        !spec.databases || new Set(spec.databases.map((d) => d.path)).size === spec.databases.length,
    },
    {
      rule: "!has(self.databases) || self.databases.all(a, self.databases.exists_one(b, b.name == a.name))",
      message: "database names must be unique",
      fieldPath: ".databases",
      check: (spec) =>
        !spec.databases || new Set(spec.databases.map((d) => d.name)).size === spec.databases.length,
    },
    {
      rule: "self.destinations.all(a, self.destinations.exists_one(b, b.name == a.name))",
      message: "destination names must be unique",
      fieldPath: ".destinations",
      check: (spec) => new Set(spec.destinations.map((d) => d.name)).size === spec.destinations.length,
    },
  ],
);

/** One database's replication facts (of `spec.databases`), per pod or over all pods. */
export const DatabaseReplicationStatus = z.object({
  name: z.string().describe("The database, as spec.databases names it."),
  ready: z.boolean().optional().describe("Per pod: every destination synced, with no current error."),
  generation: z.string().optional().describe("The database's current generation (of the first pod)."),
  lagSeconds: z.number().min(0).optional().describe("The largest lag among the destinations (and pods)."),
  lastSyncTime: z.string().optional().describe("The oldest of the destinations' last syncs."),
  lastSnapshotTime: z.string().optional().describe("The newest snapshot known (over pods: the oldest such)."),
  windowOldest: z.string().optional().describe("The oldest time a restore can reach."),
  windowNewest: z.string().optional().describe("The newest time a restore can reach."),
  lastError: z.string().optional().describe("Per pod: the database's or a destination's current error."),
});

const databasesList = z
  .array(DatabaseReplicationStatus)
  .optional()
  .meta({ "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"] });

/** One destination's self-test in one pod (the sidecar's `/status` probe), for DestinationReachable. */
export const DestinationProbeStatus = z.object({
  destination: z.string().describe("The destination, as spec.destinations names it."),
  database: z.string().optional().describe("With spec.databases: the database, as it is named there."),
  outcome: z.enum(["ok", "failed"]).describe("Whether the last self-test passed."),
  step: z
    .enum(["write", "read", "list", "delete"])
    .optional()
    .describe("The step that failed: write, read back, list or delete a probe object."),
  message: z.string().optional().describe("The store's own error."),
  hint: z.string().optional().describe("What to check: a missing bucket, a permission, the region, ..."),
});

/** One database's guardrail facts in one pod (docs/operator.md, "Guardrails"). */
export const GuardrailFacts = z.object({
  path: z.string().describe("The database file."),
  volumeFreeBytes: z.number().min(0).optional().describe("Free bytes on the database's volume."),
  volumeTotalBytes: z.number().min(0).optional().describe("Size of the database's volume."),
  walSizeBytes: z.number().min(0).optional().describe("Size of the database's -wal file."),
  walLiveBytes: z
    .number()
    .min(0)
    .optional()
    .describe(
      "Bytes written to the WAL since it last restarted (grows while checkpoints cannot restart it).",
    ),
  checkpointFailures: z
    .int()
    .min(0)
    .optional()
    .describe("Checkpoints that failed since the last one that succeeded."),
  checkpointError: z.string().optional().describe("The newest checkpoint failure, while they fail."),
  snapshotRefused: z
    .string()
    .optional()
    .describe("Why the last snapshot was not started (not enough local space)."),
});

/** Per-pod replication facts, read from the pod's sidecar `/status`. */
export const PodReplicationStatus = z.object({
  name: z.string().describe("The pod."),
  ready: z.boolean().describe("The sidecar reports every destination synced, with no current error."),
  generation: z.string().optional().describe("The database's current generation."),
  lagSeconds: z.number().min(0).optional().describe("The largest lag among the destinations."),
  lastSyncTime: z.string().optional().describe("The oldest of the destinations' last syncs."),
  lastSnapshotTime: z.string().optional().describe("The newest snapshot known."),
  windowOldest: z.string().optional().describe("The oldest time a restore can reach."),
  windowNewest: z.string().optional().describe("The newest time a restore can reach."),
  lastError: z.string().optional().describe("The current error of the database or a destination."),
  reason: z
    .string()
    .optional()
    .describe(
      "Why the pod is not replicating: OutOfMemory, PermissionDenied, RestoreFailed, SidecarFailing, " +
        "SidecarUnreachable, ReplicationError or WriterConflict.",
    ),
  databases: databasesList.describe(
    "With spec.databases: each database's facts; the fields above are over all of them.",
  ),
  probes: z
    .array(DestinationProbeStatus)
    .optional()
    .describe("Each destination's last self-test with the pod's own credentials (DestinationReachable)."),
  guardrails: z
    .array(GuardrailFacts)
    .optional()
    .describe("Each database's volume space, WAL size and checkpoint health, as the sidecar reports them."),
  fencedBy: z
    .string()
    .optional()
    .describe(
      "Another writer holds this pod's replica path (its claim, walship/claim.json): which destination, " +
        "and who; the pod writes nothing there until that claim is released or expires.",
    ),
});

export const Phase = z.enum([
  "Pending",
  "Failed",
  "Injecting",
  "Replicating",
  "Degraded",
  "Paused",
  "Deleting",
]);

export const SqliteReplicaStatus = z.object({
  observedGeneration: z.int().min(0).optional(),
  phase: Phase.optional(),
  conditions: z
    .array(Condition)
    .optional()
    .meta({ "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"] }),
  configHash: z.string().optional().describe("The hash of the replicator config the pods should run."),
  generation: z.string().optional().describe("The generation of the first pod that reports one."),
  lagSeconds: z.number().min(0).optional().describe("The largest lag among the pods."),
  lastSyncTime: z.string().optional().describe("The oldest last sync among the pods."),
  lastSnapshotTime: z.string().optional().describe("The oldest newest-snapshot among the pods."),
  windowOldest: z.string().optional().describe("Every pod can be restored to any time from here..."),
  windowNewest: z.string().optional().describe("...to here."),
  databases: databasesList.describe(
    "With spec.databases: each database over all pods (worst lag, oldest sync, common window).",
  ),
  pods: z
    .array(PodReplicationStatus)
    .optional()
    .meta({ "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"] }),
  drills: z
    .array(DrillStatus)
    .optional()
    .describe("The last drill of each destination (and database), from spec.drills or on demand."),
  drillRun: DrillRun.optional().describe("The drill Job running, or the last one."),
});

export const SqliteReplica = z.object({
  apiVersion: z.string(),
  kind: z.string(),
  metadata: z.object({}),
  spec: SqliteReplicaSpec,
  status: SqliteReplicaStatus.optional(),
});

export type SqliteReplicaSpec = z.output<typeof SqliteReplicaSpec>;
export type SqliteReplicaSpecInput = z.input<typeof SqliteReplicaSpec>;
export type SqliteReplicaStatus = z.output<typeof SqliteReplicaStatus>;
export type PodReplicationStatus = z.output<typeof PodReplicationStatus>;
export type DatabaseReplicationStatus = z.output<typeof DatabaseReplicationStatus>;
export type DestinationProbeStatus = z.output<typeof DestinationProbeStatus>;
export type GuardrailFacts = z.output<typeof GuardrailFacts>;
export type NamedDatabaseSpec = z.output<typeof NamedDatabaseSpec>;

/** A database of a SqliteReplica: `spec.database` (no name) or one of `spec.databases`. */
export interface DatabaseEntry {
  name?: string;
  path: string;
  volumeName: string;
}

/** The databases a spec replicates, in its order: `spec.databases`, or `spec.database` alone. */
export function databasesOf(spec: Pick<SqliteReplicaSpec, "database" | "databases">): DatabaseEntry[] {
  if (spec.databases) return spec.databases;
  return spec.database ? [spec.database] : [];
}

/** The spec field of database `i` of `databasesOf(spec)`, for messages. */
export function databaseField(spec: Pick<SqliteReplicaSpec, "databases">, i: number): string {
  return spec.databases ? `spec.databases[${i}]` : "spec.database";
}

/**
 * The database a SqliteRestore (`spec.database`: `name`) restores of a SqliteReplica spec: the one
 * of that name in `spec.databases`, or `spec.database` when the restore names none. A message naming
 * the field otherwise.
 */
export function selectDatabase(
  spec: Pick<SqliteReplicaSpec, "database" | "databases">,
  name: string | undefined,
  replicaName: string,
  field = "spec.database",
): DatabaseEntry | { problem: string } {
  if (spec.databases) {
    const names = spec.databases.map((d) => d.name).join(", ");
    if (name === undefined)
      return {
        problem: `${field}: SqliteReplica ${replicaName} lists several databases (${names}); name one of them`,
      };
    const db = spec.databases.find((d) => d.name === name);
    return (
      db ?? { problem: `${field}: SqliteReplica ${replicaName} has no database ${name} (it has ${names})` }
    );
  }
  if (name !== undefined)
    return {
      problem: `${field}: SqliteReplica ${replicaName} replicates one database (spec.database); leave ${field} unset`,
    };
  return spec.database ?? { problem: `SqliteReplica ${replicaName} names no database` };
}

/**
 * `spec` narrowed to the one database `db` (spec.database set, spec.databases unset), for the code
 * that handles one database at a time (restores).
 */
export function withDatabase(spec: SqliteReplicaSpec, db: DatabaseEntry): SingleDatabaseSpec {
  const { databases: _all, ...rest } = spec;
  return { ...rest, database: { path: db.path, volumeName: db.volumeName } };
}

/** A SqliteReplica spec with exactly `spec.database`. */
export type SingleDatabaseSpec = Omit<SqliteReplicaSpec, "database" | "databases"> & {
  database: { path: string; volumeName: string };
  databases?: undefined;
};
export type Phase = z.output<typeof Phase>;
export type RestoreOnStart = z.output<typeof RestoreOnStart>;

export type WorkloadKind = z.output<typeof WorkloadKind>;
export type WorkloadRef = z.output<typeof WorkloadRef>;

/**
 * The workload a SqliteReplica spec names: `workloadRef`, or the StatefulSet `statefulSetName`. Takes
 * a raw spec too (a paused or deleted SqliteReplica's, not validated): undefined when it names none.
 */
export function workloadOf(spec: unknown): WorkloadRef | undefined {
  const s = spec as
    | { statefulSetName?: unknown; workloadRef?: { kind?: unknown; name?: unknown } }
    | undefined;
  const ref = s?.workloadRef;
  if (ref && typeof ref.name === "string" && (ref.kind === "StatefulSet" || ref.kind === "Deployment"))
    return { kind: ref.kind, name: ref.name };
  if (typeof s?.statefulSetName === "string") return { kind: "StatefulSet", name: s.statefulSetName };
  return undefined;
}

/** "StatefulSet app", "Deployment app": how messages name a workload. */
export function describeWorkload(ref: WorkloadRef): string {
  return `${ref.kind} ${ref.name}`;
}

/** The sidecar's HTTP port: `spec.sidecar.metricsPort`, or the default when there is no `sidecar`. */
export function metricsPort(spec: Pick<SqliteReplicaSpec, "sidecar">): number {
  return spec.sidecar?.metricsPort ?? DEFAULT_METRICS_PORT;
}
