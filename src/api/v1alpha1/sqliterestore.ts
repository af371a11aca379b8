/**
 * SqliteRestore (walship.dev/v1alpha1, namespaced): restore a SqliteReplica's database to the latest
 * state, a point in time, or a generation and index; in place or into a new claim. The state machine
 * is src/operator/restore/machine.ts; the CRD is generated from these schemas.
 */
import { z } from "zod";
import {
  Condition,
  cel,
  DnsLabel,
  DnsSubdomain,
  Duration,
  Quantity,
  ResourceRequirements,
} from "./common.ts";
import { WorkloadRef } from "./sqlitereplica.ts";

export const SQLITE_RESTORE_KIND = "SqliteRestore";
export const SQLITE_RESTORE_PLURAL = "sqliterestores";
/** How long each of a restore's Jobs may run (its activeDeadlineSeconds) when spec.timeout is unset. */
export const DEFAULT_RESTORE_TIMEOUT = "1h";

export const RestoreTarget = cel(
  z.object({
    timestamp: z.iso
      .datetime({ offset: true })
      .optional()
      .describe("Restore to the last transaction committed at or before this time (RFC 3339)."),
    generation: z
      .string()
      .regex(/^[0-9a-f]{16}$/, "must be 16 lowercase hex digits")
      .optional()
      .describe("Restore from this generation."),
    index: z.int().min(0).optional().describe("Restore up to this WAL index (needs generation)."),
  }),
  [
    {
      rule: "!has(self.index) || has(self.generation)",
      message: "index needs generation",
      fieldPath: ".index",
      check: (t) => t.index === undefined || t.generation !== undefined,
    },
    {
      rule: "!(has(self.timestamp) && has(self.generation))",
      message: "set timestamp or generation, not both",
      check: (t) => !(t.timestamp !== undefined && t.generation !== undefined),
    },
  ],
);

export const SqliteRestoreSpec = cel(
  z.object({
    sqliteReplicaName: DnsSubdomain.describe(
      "The SqliteReplica, in this namespace, whose database to restore.",
    ),
    pod: DnsSubdomain.optional().describe(
      "The pod whose replica to restore; the first pod when unset. Not for a Deployment, whose one " +
        "replica is named after the Deployment.",
    ),
    database: DnsLabel.optional().describe(
      "The database to restore, by its name in the SqliteReplica's spec.databases; required when it " +
        "lists several, unset when it has one spec.database.",
    ),
    destination: DnsLabel.optional().describe("The destination to restore from; the first when unset."),
    target: RestoreTarget.optional().describe("What to restore; the latest state when unset."),
    mode: z
      .enum(["InPlace", "NewClaim"])
      .default("NewClaim")
      .describe(
        "InPlace: scale the StatefulSet (or Deployment) to 0, restore onto its volume, verify, scale back. " +
          "NewClaim: restore into a new PersistentVolumeClaim and leave the app alone.",
      ),
    newClaim: z
      .object({
        name: DnsSubdomain,
        storageClassName: DnsSubdomain.optional(),
        size: Quantity.optional(),
      })
      .optional()
      .describe("The claim to create for mode NewClaim."),
    verify: z
      .object({
        sql: z
          .string()
          .min(1)
          .max(16384)
          .regex(/^[^\x00]*$/, "must not contain a NUL character")
          .optional()
          .describe(
            "A query run on the restored file before it is used (walship restore -verify-sql): it must " +
              "succeed and return at least one row, else the restore fails and the original is kept.",
          ),
      })
      .optional()
      .describe("Checks on the restored database besides PRAGMA integrity_check, which always runs."),
    timeout: Duration.default(DEFAULT_RESTORE_TIMEOUT).describe(
      "How long each Job of the restore (plan, restore, swap, rollback) may run, as its " +
        "activeDeadlineSeconds. A Job past it fails the restore: InPlace puts the original back and scales up.",
    ),
    resources: ResourceRequirements.optional().describe(
      "Resources of this restore's Jobs; the SqliteReplica's spec.restoreResources (or its default) " +
        "when unset.",
    ),
    previousDatabase: z
      .enum(["Retain", "Delete"])
      .default("Retain")
      .describe(
        "InPlace: what becomes of the database the restore replaced, kept as <db>.pre-restore-<name> on " +
          "the volume. Retain: kept until someone deletes it. Delete: removed by the swap Job once the " +
          "restored file is in place.",
      ),
  }),
  [
    {
      rule: "self.mode != 'NewClaim' || has(self.newClaim)",
      message: "mode NewClaim needs newClaim",
      fieldPath: ".newClaim",
      check: (s) => s.mode !== "NewClaim" || s.newClaim !== undefined,
    },
  ],
);

/** The phases, in order; Succeeded and Failed are final. */
export const RESTORE_PHASES = [
  "Pending",
  "Planning",
  "ScalingDown",
  "Restoring",
  "Verifying",
  "Swapping",
  "ScalingUp",
  "Succeeded",
  "Failed",
] as const;
export type RestorePhase = (typeof RESTORE_PHASES)[number];

/** The exact point the database was restored to, as `walship restore` reported it. */
export const RestoredPosition = z.object({
  destination: z.string().optional().describe("The destination restored from."),
  generation: z.string().describe("The generation restored from."),
  index: z.int().min(0).describe("The last WAL index applied."),
  offset: z.int().min(0).describe("The byte offset in that index: the last commit applied ends there."),
  position: z.string().describe("generation/index(hex):offset"),
  lastCommitTime: z.string().optional().describe("The commit time of the last transaction applied."),
});

export const SqliteRestoreStatus = z.object({
  observedGeneration: z.int().min(0).optional(),
  phase: z.enum(RESTORE_PHASES).optional(),
  conditions: z
    .array(Condition)
    .optional()
    .meta({ "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"] }),
  target: z.string().optional().describe("What is restored: latest, a time, or generation[/index]."),
  startedAt: z.string().optional(),
  completedAt: z.string().optional(),
  message: z.string().optional(),
  statefulSetName: z.string().optional().describe("The SqliteReplica's StatefulSet, as resolved at start."),
  workloadRef: WorkloadRef.optional().describe(
    "The SqliteReplica's workload (StatefulSet or Deployment), as resolved at start.",
  ),
  pod: z.string().optional().describe("The pod whose replica and (InPlace) volume are restored."),
  claimName: z.string().optional().describe("The claim restored onto."),
  originalReplicas: z
    .int()
    .min(0)
    .optional()
    .describe("The workload's replica count before InPlace scaled it to 0; scaled back to it."),
  backupPath: z.string().optional().describe("Where InPlace keeps the previous database file."),
  failure: z
    .object({ phase: z.string(), reason: z.string(), message: z.string() })
    .optional()
    .describe("Why the restore failed; set before InPlace puts the original back and scales up."),
  restored: RestoredPosition.optional(),
});

export type SqliteRestoreSpec = z.output<typeof SqliteRestoreSpec>;
export type SqliteRestoreStatus = z.output<typeof SqliteRestoreStatus>;
