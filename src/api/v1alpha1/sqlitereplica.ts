/**
 * SqliteReplica (walship.dev/v1alpha1, namespaced): replicate one SQLite database of a StatefulSet's
 * (or a one-replica Deployment's) pods to one or more destinations. These zod schemas are the single source of the TypeScript types,
 * of the reconcile-time validation and of crds/walship.dev_sqlitereplicas.yaml.
 */
import { z } from "zod";
import {
  Condition,
  ConfigText,
  cel,
  DnsLabel,
  DnsSubdomain,
  Duration,
  ResourceRequirements,
  SecretKeyRef,
} from "./common.ts";

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

export const S3Credentials = cel(
  z
    .object({
      accessKeyId: SecretKeyRef.optional().describe("The access key id, from a Secret."),
      secretAccessKey: SecretKeyRef.optional().describe("The secret access key, from a Secret."),
      fromServiceAccount: z
        .boolean()
        .optional()
        .describe(
          "Use the pod's service-account identity (IRSA, EKS Pod Identity, or any AWS SDK default " +
            "credential source) instead of keys.",
        ),
    })
    .describe("Either both key references, or fromServiceAccount: true."),
  [
    {
      rule:
        "has(self.fromServiceAccount) && self.fromServiceAccount ? " +
        "!has(self.accessKeyId) && !has(self.secretAccessKey) : " +
        "has(self.accessKeyId) && has(self.secretAccessKey)",
      message: "set both accessKeyId and secretAccessKey, or fromServiceAccount: true (not both)",
      check: (c) =>
        c.fromServiceAccount === true
          ? c.accessKeyId === undefined && c.secretAccessKey === undefined
          : c.accessKeyId !== undefined && c.secretAccessKey !== undefined,
    },
  ],
);

export const S3ServerSideEncryption = cel(
  z.object({
    mode: z
      .enum(["SSE-S3", "SSE-KMS", "SSE-C"])
      .describe(
        "SSE-S3: the store's own keys; SSE-KMS: a KMS key (kmsKeyId, else the store's default); " +
          "SSE-C: a customer key from a Secret, sent with every request (needs an https endpoint; " +
          "Litestream v0.3.13 cannot read such objects).",
      ),
    kmsKeyId: ConfigText.min(1).max(2048).optional().describe("The KMS key id or ARN, with SSE-KMS."),
    customerKey: SecretKeyRef.optional().describe(
      "With SSE-C: a Secret key holding the 256-bit key in base64 (openssl rand -base64 32).",
    ),
  }),
  [
    {
      rule: "!has(self.kmsKeyId) || self.mode == 'SSE-KMS'",
      message: "kmsKeyId goes with mode SSE-KMS",
      fieldPath: ".kmsKeyId",
      check: (e) => e.kmsKeyId === undefined || e.mode === "SSE-KMS",
    },
    {
      rule: "has(self.customerKey) == (self.mode == 'SSE-C')",
      message: "customerKey is required with mode SSE-C, and only with it",
      check: (e) => (e.customerKey !== undefined) === (e.mode === "SSE-C"),
    },
  ],
);

export const S3Destination = z.object({
  bucket: z
    .string()
    .min(3)
    .max(63)
    .regex(/^[a-z0-9][a-z0-9.-]*[a-z0-9]$/, "must be an S3 bucket name")
    .describe("The bucket."),
  path: ConfigText.max(1024)
    .regex(/^[^/]/, "must not start with '/' (object stores that clean paths would hide the objects)")
    .optional()
    .describe("Key prefix in the bucket. Each pod replicates under <path>/<pod name>."),
  endpoint: ConfigText.min(1)
    .max(1024)
    .optional()
    .describe("The store's URL for anything that is not AWS, e.g. http://minio.storage:9000."),
  region: ConfigText.min(1)
    .max(128)
    .optional()
    .describe("The region; looked up (AWS) or us-east-1 when unset."),
  forcePathStyle: z
    .boolean()
    .optional()
    .describe("Path-style requests; on by default when an endpoint is set."),
  skipVerify: z.boolean().optional().describe("Skip TLS certificate checks (self-signed stores only)."),
  credentials: S3Credentials,
  serverSideEncryption: S3ServerSideEncryption.optional().describe(
    "Encryption by the store of what it keeps on disk (it sees the data). For encryption the store " +
      "cannot read, use the destination's age.",
  ),
});

/** An object-store prefix: relative, as for S3. */
const ObjectPath = ConfigText.max(1024)
  .regex(/^[^/]/, "must not start with '/' (object stores that clean paths would hide the objects)")
  .optional()
  .describe("Key prefix. Each pod replicates under <path>/<pod name>.");

export const SftpDestination = cel(
  z.object({
    host: ConfigText.min(1)
      .max(260)
      .regex(/^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+)(:[0-9]{1,5})?$/, "must be host or host:port")
      .describe("The SSH server, host or host:port (22 when absent)."),
    user: ConfigText.min(1).max(64).describe("The login user."),
    path: ConfigText.max(1024)
      .optional()
      .describe(
        "The remote directory (relative to the login directory unless it starts with '/'). Each pod " +
          "replicates under <path>/<pod name>.",
      ),
    privateKey: SecretKeyRef.optional().describe("The private key (OpenSSH or PEM), from a Secret."),
    passphrase: SecretKeyRef.optional().describe("The private key's passphrase, from a Secret."),
    password: SecretKeyRef.optional().describe("A password instead of a key, from a Secret."),
    hostKey: SecretKeyRef.optional().describe(
      "The server's public host key(s), one 'ssh-ed25519 AAAA...' line each, from a Secret.",
    ),
    insecureIgnoreHostKey: z
      .boolean()
      .optional()
      .describe("Accept any host key (Litestream v0.3.13's behaviour); instead of hostKey."),
  }),
  [
    {
      rule: "has(self.privateKey) != has(self.password)",
      message: "set exactly one of privateKey or password",
      check: (d) => (d.privateKey !== undefined) !== (d.password !== undefined),
    },
    {
      rule: "!has(self.passphrase) || has(self.privateKey)",
      message: "passphrase needs privateKey",
      fieldPath: ".passphrase",
      check: (d) => d.passphrase === undefined || d.privateKey !== undefined,
    },
    {
      rule: "has(self.hostKey) != (has(self.insecureIgnoreHostKey) && self.insecureIgnoreHostKey)",
      message: "set hostKey, or insecureIgnoreHostKey: true (not both)",
      check: (d) => (d.hostKey !== undefined) !== (d.insecureIgnoreHostKey === true),
    },
  ],
);

/** Keys from a Secret, or the pod's own cloud identity (workload identity). */
const fromServiceAccount = z
  .boolean()
  .optional()
  .describe(
    "Use the pod's workload identity (GKE Workload Identity, Azure Workload Identity) instead of a key.",
  );

export const GcsDestination = z.object({
  bucket: ConfigText.min(3)
    .max(222)
    .regex(/^[a-z0-9][a-z0-9._-]*[a-z0-9]$/, "must be a GCS bucket name"),
  path: ObjectPath,
  endpoint: ConfigText.min(1).max(1024).optional().describe("Another JSON API endpoint (an emulator)."),
  credentials: cel(
    z.object({
      serviceAccountKey: SecretKeyRef.optional().describe("A service-account key (JSON), from a Secret."),
      fromServiceAccount,
    }),
    [
      {
        rule: "has(self.serviceAccountKey) != (has(self.fromServiceAccount) && self.fromServiceAccount)",
        message: "set serviceAccountKey, or fromServiceAccount: true (not both)",
        check: (c) => (c.serviceAccountKey !== undefined) !== (c.fromServiceAccount === true),
      },
    ],
  ),
});

export const AbsDestination = z.object({
  accountName: ConfigText.min(3)
    .max(24)
    .regex(/^[a-z0-9]+$/, "must be a storage account name"),
  container: ConfigText.min(3)
    .max(63)
    .regex(/^[a-z0-9][a-z0-9-]*[a-z0-9]$/, "must be a container name"),
  path: ObjectPath,
  endpoint: ConfigText.min(1)
    .max(1024)
    .optional()
    .describe("The account URL; default https://<accountName>.blob.core.windows.net."),
  credentials: cel(
    z.object({
      accountKey: SecretKeyRef.optional().describe("The account's shared key, from a Secret."),
      sasToken: SecretKeyRef.optional().describe("A SAS token for the container, from a Secret."),
      fromServiceAccount,
    }),
    [
      {
        rule:
          "(has(self.accountKey) ? 1 : 0) + (has(self.sasToken) ? 1 : 0) + " +
          "(has(self.fromServiceAccount) && self.fromServiceAccount ? 1 : 0) == 1",
        message: "set exactly one of accountKey, sasToken or fromServiceAccount: true",
        check: (c) =>
          (c.accountKey ? 1 : 0) + (c.sasToken ? 1 : 0) + (c.fromServiceAccount === true ? 1 : 0) === 1,
      },
    ],
  ),
});

export const FileDestination = cel(
  z.object({
    claimName: DnsSubdomain.describe("A PersistentVolumeClaim in the namespace, mounted into the sidecar."),
    path: ConfigText.max(1024)
      .regex(/^[^/]/, "must be a relative path")
      .optional()
      .describe("A directory inside the claim. Each pod replicates under <path>/<pod name>."),
  }),
  [
    {
      rule: "!has(self.path) || !self.path.matches('(^|/)[.][.](/|$)')",
      message: "path must not contain '..'",
      fieldPath: ".path",
      check: (f) => f.path === undefined || !/(^|\/)\.\.(\/|$)/.test(f.path),
    },
  ],
);

/** Client-side encryption of a destination, as Litestream v0.3.13's age: (X25519 keys only). */
export const AgeEncryption = z.object({
  identities: z
    .array(SecretKeyRef)
    .min(1)
    .max(16)
    .describe(
      "Secret keys holding age identities (AGE-SECRET-KEY-1..., an age-keygen file): what opens the " +
        "replica. Keep the old identity here after a rotation until its backups are gone.",
    ),
  recipients: z
    .array(SecretKeyRef)
    .min(1)
    .max(16)
    .describe(
      "Secret keys holding age recipients (age1..., one per line): what new objects are encrypted " +
        "to. At least one must belong to an identity above.",
    ),
  allowPlaintextGenerations: z
    .boolean()
    .optional()
    .describe(
      "Start encrypting on a path that already holds plaintext backups (kept beside, readable only " +
        "without age). Off: such a path is refused, as a replica mixing both cannot be restored.",
    ),
});

export const Destination = cel(
  z.object({
    name: DnsLabel.max(40).describe(
      "Unique among the destinations; names the replica in status and metrics.",
    ),
    s3: S3Destination.optional().describe("An S3 or S3-compatible bucket."),
    file: FileDestination.optional().describe("A directory on a PersistentVolumeClaim."),
    sftp: SftpDestination.optional().describe("A directory on an SSH server (SFTP)."),
    gcs: GcsDestination.optional().describe("A Google Cloud Storage bucket."),
    abs: AbsDestination.optional().describe("An Azure Blob Storage container."),
    age: AgeEncryption.optional().describe(
      "Encrypt every object with age before it leaves the pod (Litestream v0.3.13 compatible); keys " +
        "from Secrets, never in the ConfigMap.",
    ),
  }),
  [
    {
      rule:
        "(has(self.s3) ? 1 : 0) + (has(self.file) ? 1 : 0) + (has(self.sftp) ? 1 : 0) + " +
        "(has(self.gcs) ? 1 : 0) + (has(self.abs) ? 1 : 0) == 1",
      message: "set exactly one of s3, file, sftp, gcs or abs",
      check: (d) =>
        (d.s3 ? 1 : 0) + (d.file ? 1 : 0) + (d.sftp ? 1 : 0) + (d.gcs ? 1 : 0) + (d.abs ? 1 : 0) === 1,
    },
  ],
);

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

export const SqliteReplicaSpec = cel(
  z.object({
    statefulSetName: DnsSubdomain.optional().describe(
      "The StatefulSet, in this namespace, whose pods hold the database; or set workloadRef instead.",
    ),
    workloadRef: WorkloadRef.optional().describe(
      "The StatefulSet or Deployment whose pods hold the database; instead of statefulSetName.",
    ),
    database: cel(
      z.object({
        path: ConfigText.min(2)
          .max(1024)
          .regex(/^\/.*[^/]$/, "must be an absolute file path")
          .regex(/^(\/[^/]+)+$/, "must not contain '//'")
          .describe("The database file as the app container sees it, e.g. /data/app.db."),
        volumeName: DnsLabel.describe(
          "The volume that holds the database: a volumeClaimTemplate or a pod volume of the StatefulSet. " +
            "The app container must mount it at a directory above the path.",
        ),
      }),
      [
        {
          rule: "!self.path.matches('/[.][.]?(/|$)')",
          message: "path must not contain '.' or '..' segments",
          fieldPath: ".path",
          check: (d) => !/\/\.\.?(\/|$)/.test(d.path),
        },
      ],
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
  }),
  [
    {
      rule: "has(self.statefulSetName) != has(self.workloadRef)",
      message: "set exactly one of statefulSetName or workloadRef",
      check: (spec) => (spec.statefulSetName !== undefined) !== (spec.workloadRef !== undefined),
    },
    {
      rule: "self.destinations.all(a, self.destinations.exists_one(b, b.name == a.name))",
      message: "destination names must be unique",
      fieldPath: ".destinations",
      check: (spec) => new Set(spec.destinations.map((d) => d.name)).size === spec.destinations.length,
    },
  ],
);

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
        "SidecarUnreachable or ReplicationError.",
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
  pods: z
    .array(PodReplicationStatus)
    .optional()
    .meta({ "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"] }),
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
export type Destination = z.output<typeof Destination>;
export type S3Destination = z.output<typeof S3Destination>;
export type FileDestination = z.output<typeof FileDestination>;
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
