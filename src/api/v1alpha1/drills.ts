/**
 * Restore drills of a SqliteReplica (`spec.drills`, `status.drills`, `status.drillRun`): a Job that
 * restores each destination's latest state (and optionally a random point in the recoverability
 * window) into scratch space, runs `PRAGMA integrity_check` and the user's query, and reports. The
 * operator's side is src/operator/replica/drills.ts; the Job's, src/cli/drill.ts.
 */
import { z } from "zod";
import { CRON_PATTERN } from "../../shared/cron.ts";
import { DnsLabel, Duration, Quantity } from "./common.ts";

/** Set (to any new value, e.g. a time) on a SqliteReplica: run a drill now. `kubectl walship drill` sets it. */
export const DRILL_REQUESTED_ANNOTATION = "walship.dev/drill-requested";
export const DEFAULT_DRILL_TIMEOUT = "1h";

export const DrillsSpec = z.object({
  schedule: z
    .string()
    .max(128)
    .regex(
      new RegExp(CRON_PATTERN),
      "must be a cron schedule of 5 fields (minute hour day month weekday) or @daily",
    )
    .optional()
    .describe(
      'When to drill, as a 5-field cron schedule in UTC (e.g. "30 3 * * 0"); unset: only on demand ' +
        `(the annotation ${DRILL_REQUESTED_ANNOTATION}, or kubectl walship drill). A schedule the pattern ` +
        "admits but that names no time (minute 61) is reported in the DrillsPassing condition; replication goes on.",
    ),
  pointInTime: z
    .boolean()
    .default(false)
    .describe("Also restore a random time in each destination's recoverability window."),
  verifyQuery: z
    .string()
    .min(1)
    .max(4096)
    .optional()
    .describe("SQL that must run and return at least one row on each restored database."),
  destinations: z
    .array(DnsLabel)
    .max(8)
    .optional()
    .describe("The destinations to drill (by name); all when unset."),
  timeout: Duration.default(DEFAULT_DRILL_TIMEOUT).describe("The drill Job's deadline."),
  scratchSizeLimit: Quantity.optional().describe(
    "The sizeLimit of the drill's scratch emptyDir, where it restores (e.g. 2Gi): a drill that would " +
      "write more is evicted by the kubelet and fails, instead of filling the node's disk. Unset: no limit.",
  ),
});

const DrillRestore = z.object({
  position: z.string().optional().describe("The restored position, generation/index(hex):offset."),
  lastCommitTime: z.string().optional().describe("The commit time of the last transaction restored."),
  restoreSeconds: z
    .number()
    .min(0)
    .optional()
    .describe("How long the restore took, checks included: the measured time to recover."),
  sizeBytes: z.int().min(0).optional().describe("The restored database's size."),
});

/** The last drill of one destination (and database). */
export const DrillStatus = DrillRestore.extend({
  destination: z.string(),
  database: z.string().optional().describe("With spec.databases: the database's name."),
  at: z.string().describe("When the drill finished."),
  outcome: z.enum(["Passed", "Failed"]),
  lastPassedAt: z.string().optional().describe("When a drill of this destination last passed."),
  pointInTime: DrillRestore.extend({ timestamp: z.string() })
    .optional()
    .describe("The random time in the window restored to, and that restore."),
  message: z.string().optional().describe("Why it failed."),
  job: z.string().optional().describe("The drill Job."),
});

/** The drill Job running or last run. */
export const DrillRun = z.object({
  job: z.string(),
  startedAt: z.string(),
  completedAt: z.string().optional(),
  request: z
    .string()
    .optional()
    .describe(`The value of ${DRILL_REQUESTED_ANNOTATION} this run answered (on demand).`),
  answeredRequest: z
    .string()
    .optional()
    .describe(
      `On a scheduled run: the value of ${DRILL_REQUESTED_ANNOTATION} an earlier run answered, so that it is not answered again.`,
    ),
});

export type DrillsSpec = z.output<typeof DrillsSpec>;
export type DrillStatus = z.output<typeof DrillStatus>;
export type DrillRun = z.output<typeof DrillRun>;
