/**
 * The JSON document `walship replicate` serves at `GET /status`, and which the operator reads from
 * each pod's sidecar. One zod schema is the single source of the TypeScript types: the replicator
 * builds a `ReplicatorStatus`, the operator parses with `ReplicatorStatusSchema`.
 *
 * Versioned like a Kubernetes object (`apiVersion`, `kind`). Within `walship.dev/v1alpha1` fields are
 * only ever added, and parsing drops keys it does not know, so an older operator reads a newer
 * replicator's document. A change that removes or redefines a field needs a new apiVersion.
 *
 * Conventions: times are RFC 3339 strings in UTC; an optional field is absent when the value is not
 * known yet (never `null`); sizes are bytes, durations seconds.
 */
import { z } from "zod";
import { STATUS_API_VERSION, STATUS_KIND } from "./status-kind.ts";

export { STATUS_API_VERSION, STATUS_KIND };

const Timestamp = z.iso.datetime({ offset: true });
const Generation = z.string().regex(/^[0-9a-f]{16}$/, "a generation is 16 lowercase hex digits");
const Count = z.number().int().min(0);

/** A position in a database's replicated WAL stream (Litestream's `generation/index:offset`). */
export const PositionSchema = z.object({
  generation: Generation,
  /** Shadow WAL index. */
  index: Count,
  /** Byte offset in that shadow WAL file. */
  offset: Count,
});

/** A failure that is current: cleared on the next success. */
export const ErrorInfoSchema = z.object({
  /** One line, with causes (`sync db: open ...: EACCES ...`). */
  message: z.string(),
  /** When it happened, when known. */
  at: Timestamp.optional(),
});

/** One validation run of a destination: `ok`, `mismatch`, or `error` (it could not complete). */
export const ValidationSchema = z.object({
  outcome: z.enum(["ok", "mismatch", "error"]),
  at: Timestamp,
  position: PositionSchema.optional(),
  message: z.string().optional(),
  okCount: Count,
  errorCount: Count,
});

/**
 * The times a restore with `-timestamp` can reach on a destination. Both ends or neither: with no
 * snapshot known, nothing is restorable and the window is empty.
 */
export const WindowSchema = z.object({
  /** The oldest snapshot still stored, across generations. */
  oldest: Timestamp.optional(),
  /**
   * The newest commit known durable there (the last sync when no commit time is known), never
   * before `oldest`.
   */
  newest: Timestamp.optional(),
});

/**
 * The destination's self-test (write, read back, list and delete a probe object with the process's
 * own credentials): the last finished run. `step`, `message` and `hint` only when it failed.
 */
export const ProbeSchema = z.object({
  outcome: z.enum(["ok", "failed"]),
  at: Timestamp,
  /** The step that failed. */
  step: z.enum(["write", "read", "list", "delete"]).optional(),
  /** The store's own error, one line; never a credential. */
  message: z.string().optional(),
  /** What to check (a missing bucket, no permission to delete, the wrong region, ...). */
  hint: z.string().optional(),
});

/**
 * Another writer holds the destination's single-writer claim (`<path>/walship/claim.json`): this
 * replicator writes nothing there until that claim is released or expires.
 */
export const FencedSchema = z.object({
  /** One line naming the other writer: `pod ns/app-0 (uid …) of SqliteReplica ns/app`, or a process. */
  holder: z.string(),
  /** The other writer's pod, when it runs in one. */
  pod: z.object({ namespace: z.string(), name: z.string(), uid: z.string() }).optional(),
  /** The SqliteReplica (`namespace/name`) that injected the other writer, when known. */
  sqliteReplica: z.string().optional(),
  /** When the other claim expires unless renewed (by its holder's clock). */
  expiresAt: Timestamp,
  /** Since when this replicator has stood back. */
  since: Timestamp,
  /** The Lease (`namespace/name`) the other writer holds, when its Lease fenced this replicator. */
  lease: z.string().optional(),
});

/** In a cluster, the destination's Lease (src/replicator/lease.ts) as the replicator last saw it. */
export const LeaseStatusSchema = z.object({
  /** `namespace/name`. */
  name: z.string(),
  /** True while this replicator holds it. */
  held: z.boolean(),
  /** Why it could not be checked (API server, RBAC); the claim in the bucket alone fences meanwhile. */
  error: z.string().optional(),
});

export const DestinationStatusSchema = z.object({
  /** The destination's name in the config (Litestream's replica name). */
  name: z.string(),
  /** "file", "s3", ... */
  type: z.string(),
  /** A path or URL saying where the objects go; no credentials. */
  location: z.string(),
  /** True once it has synced, with no current error. */
  ready: z.boolean(),
  /** The generation it is writing. */
  generation: Generation.optional(),
  /** The position after its last upload. */
  position: PositionSchema.optional(),
  /** Age of the oldest commit seen in the database and not yet durable here; 0 when none. */
  lagSeconds: z.number().min(0),
  /** Commits seen in the database and not yet durable here. */
  pendingTransactions: Count,
  /** Shadow WAL bytes not yet uploaded here (an upper bound while the position is being rebuilt). */
  pendingBytes: Count,
  /** The last sync that succeeded. */
  lastSyncAt: Timestamp.optional(),
  /** The newest snapshot this process knows of. */
  lastSnapshot: z.object({ at: Timestamp, index: Count.optional() }).optional(),
  window: WindowSchema,
  syncCount: Count,
  syncErrorCount: Count,
  lastError: ErrorInfoSchema.optional(),
  /** The last validation (restore at a pinned position, compared with the database), when enabled. */
  validation: ValidationSchema.optional(),
  /** The last self-test, once one has finished (absent with `probe-interval: 0`). */
  probe: ProbeSchema.optional(),
  /**
   * The last snapshot was not started: what it writes locally would not fit (the message has the
   * numbers). Cleared by the next snapshot taken.
   */
  snapshotRefused: ErrorInfoSchema.optional(),
  /** Set while another writer holds the destination (single-writer fencing). */
  fenced: FencedSchema.optional(),
  lease: LeaseStatusSchema.optional(),
});

/**
 * A file the replicator needs and may not use, found when the database is not replicating: the path,
 * what it needs there, and the error code (`EACCES`, `EPERM`, `EROFS`).
 */
export const AccessProblemSchema = z.object({
  path: z.string(),
  /** "read and write" (the database, -wal, -shm) or "create files in" (the directories). */
  need: z.string(),
  code: z.string(),
});

/** The file system under the database's directory (statfs), measured when the document is made. */
export const VolumeSchema = z.object({
  /** Bytes the replicator (an unprivileged process) may still write. */
  freeBytes: Count,
  totalBytes: Count,
});

/** Whether the replicator's checkpoints of the database are failing. */
export const CheckpointStatusSchema = z.object({
  /** Checkpoints that failed since the last one that succeeded. */
  consecutiveFailures: Count,
  /** The newest failure, while the streak lasts. */
  lastError: ErrorInfoSchema.optional(),
  /** The last checkpoint that succeeded (since startup). */
  lastSuccessAt: Timestamp.optional(),
});

/** Who the replicator process runs as. */
export const RunAsSchema = z.object({
  uid: z.number().int(),
  gid: z.number().int(),
  groups: z.array(z.number().int()),
});

export const DatabaseStatusSchema = z.object({
  /** Absolute path of the database file. */
  path: z.string(),
  /** True once it has a generation. */
  ready: z.boolean(),
  generation: Generation.optional(),
  /** The end of the replicable stream: the committed end of the current shadow WAL. */
  position: PositionSchema.optional(),
  /**
   * When the replicator last began a read of the WAL that it completed: every commit made before
   * this time is at `position` or before it, and counted in each destination's `pendingTransactions`
   * until durable there. A commit made before `walReadAt`, in a document where a destination has
   * nothing pending, is on that destination. Absent before the first read.
   */
  walReadAt: Timestamp.optional(),
  /** Known once the database has been opened. */
  pageSize: z.number().int().positive().optional(),
  sizeBytes: Count,
  walSizeBytes: Count,
  lastError: ErrorInfoSchema.optional(),
  /** Set while the database is not replicating and a file it needs is not accessible. */
  access: AccessProblemSchema.optional(),
  replicas: z.array(DestinationStatusSchema),
  /**
   * Guardrails: bytes written to the WAL since it last restarted (the committed size of the current
   * shadow WAL): what checkpoints have not yet let SQLite write over. It grows without bound while
   * no checkpoint can restart the WAL; `walSizeBytes` is the file, which keeps its largest size.
   */
  walLiveBytes: Count.optional(),
  /** Guardrails: space on the database's volume (absent when statfs fails). */
  volume: VolumeSchema.optional(),
  /** Guardrails: the checkpoints' health. */
  checkpoint: CheckpointStatusSchema.optional(),
});

export const ReplicatorStatusSchema = z.object({
  apiVersion: z.literal(STATUS_API_VERSION),
  kind: z.literal(STATUS_KIND),
  /** The walship build that wrote the document. */
  version: z.string(),
  /** When the document was produced. */
  time: Timestamp,
  /** The same answer `/readyz` gives. */
  ready: z.boolean(),
  /** The process's user and groups (absent on platforms without them). */
  runAs: RunAsSchema.optional(),
  databases: z.array(DatabaseStatusSchema),
});

export type Position = z.infer<typeof PositionSchema>;
export type ErrorInfo = z.infer<typeof ErrorInfoSchema>;
export type RecoverabilityWindow = z.infer<typeof WindowSchema>;
export type DestinationStatus = z.infer<typeof DestinationStatusSchema>;
export type Probe = z.infer<typeof ProbeSchema>;
export type Fenced = z.infer<typeof FencedSchema>;
export type DatabaseStatus = z.infer<typeof DatabaseStatusSchema>;
export type AccessProblem = z.infer<typeof AccessProblemSchema>;
export type RunAs = z.infer<typeof RunAsSchema>;
export type VolumeStatus = z.infer<typeof VolumeSchema>;
export type CheckpointStatus = z.infer<typeof CheckpointStatusSchema>;
export type ReplicatorStatus = z.infer<typeof ReplicatorStatusSchema>;

/** The body of `/readyz`: which database or destination is not ready, and why. */
export const ReadinessSchema = z.object({
  ready: z.boolean(),
  notReady: z.array(
    z.object({
      db: z.string(),
      /** Absent when the database itself is not ready. */
      replica: z.string().optional(),
      reason: z.string(),
    }),
  ),
});

export type Readiness = z.infer<typeof ReadinessSchema>;
