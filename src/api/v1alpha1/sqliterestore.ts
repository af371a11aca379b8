/**
 * SqliteRestore (walship.dev/v1alpha1, namespaced): restore a SqliteReplica's database to the latest
 * state, a point in time, or a generation and index; in place or into a new claim. Only the schema
 * exists so far (the reconcile is issue 6); the CRD is generated from it.
 */
import { z } from "zod";
import { Condition, cel, DnsLabel, DnsSubdomain, Quantity } from "./common.ts";

export const SQLITE_RESTORE_KIND = "SqliteRestore";
export const SQLITE_RESTORE_PLURAL = "sqliterestores";

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
    pod: z.string().min(1).optional().describe("The pod whose replica to restore; the first pod when unset."),
    destination: DnsLabel.optional().describe("The destination to restore from; the first when unset."),
    target: RestoreTarget.optional().describe("What to restore; the latest state when unset."),
    mode: z
      .enum(["InPlace", "NewClaim"])
      .default("NewClaim")
      .describe(
        "InPlace: scale the StatefulSet to 0, restore onto its volume, verify, scale back. " +
          "NewClaim: restore into a new PersistentVolumeClaim and leave the app alone.",
      ),
    newClaim: z
      .object({
        name: DnsSubdomain,
        storageClassName: z.string().optional(),
        size: Quantity.optional(),
      })
      .optional()
      .describe("The claim to create for mode NewClaim."),
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

export const SqliteRestoreStatus = z.object({
  observedGeneration: z.int().min(0).optional(),
  phase: z
    .enum(["Pending", "ScalingDown", "Restoring", "Verifying", "ScalingUp", "Succeeded", "Failed"])
    .optional(),
  conditions: z
    .array(Condition)
    .optional()
    .meta({ "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"] }),
  startTime: z.string().optional(),
  completionTime: z.string().optional(),
  restoredGeneration: z.string().optional(),
  restoredIndex: z.int().min(0).optional(),
});

export type SqliteRestoreSpec = z.output<typeof SqliteRestoreSpec>;
export type SqliteRestoreStatus = z.output<typeof SqliteRestoreStatus>;
