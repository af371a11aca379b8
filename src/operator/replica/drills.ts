/**
 * Restore drills of a SqliteReplica, decided purely: `decideDrill(observed)` returns the status to
 * write (status.drills, status.drillRun), the DrillsPassing condition, the Job to create, the Events
 * and when to look again (test/unit/operator-drills.test.ts). The reconcile writes the status first,
 * then creates the Job (drillrunner.ts), so a restarted operator resumes from status.drillRun.
 *
 * - A run is started when the annotation walship.dev/drill-requested holds a value no run answered yet
 *   (the last run's `request`, or the `answeredRequest` a scheduled run carries on; on demand, with or
 *   without spec.drills), or when the schedule's next time after the
 *   last run's start (or the SqliteReplica's creation) has come. A missed slot runs once, not once
 *   per missed slot.
 * - While a run's Job runs, look again every few seconds; once it finished, its report (the pod's
 *   termination message) becomes one status.drills entry per destination (and database), replacing
 *   that destination's previous one; `lastPassedAt` carries over. A Job that failed without a report
 *   (killed, out of memory, deadline) fails every destination it drilled, with the Job's reason.
 * - DrillsPassing: True when every destination's last drill passed, False when one failed (or the
 *   schedule is invalid), Unknown before the first drill. Not part of Ready: a failed drill is a
 *   finding about the backups, the replication itself may be fine.
 */
import {
  DRILL_REQUESTED_ANNOTATION,
  type DrillRun,
  type DrillStatus,
  type SqliteReplicaSpec,
} from "../../api/v1alpha1/index.ts";
import { nextCronTime, parseCron } from "../../shared/cron.ts";
import { type DrillResult, parseDrillReport } from "../../shared/drill.ts";
import { drillJobName, requestKey, slotKey } from "../specs/drilljob.ts";
import type { Cond } from "./conditions.ts";

/** How often a running drill Job is looked at. */
export const DRILL_POLL_MS = 3000;
/** How long a Job recorded as started may be missing (created after the status write) before it counts as lost. */
export const DRILL_JOB_GRACE_MS = 60_000;

/** What the operator saw of the run's Job. */
export type DrillJobState =
  | { state: "Missing" }
  | { state: "Running" }
  | { state: "Succeeded" | "Failed"; message?: string; reason?: string };

/** One destination (and database) a drill covers. */
export interface DrillTarget {
  destination: string;
  /** The database's name, with spec.databases. */
  database?: string;
  /** The database's path in the config (how the report names it). */
  path: string;
}

export interface DrillObserved {
  now: Date;
  name: string;
  spec: Pick<SqliteReplicaSpec, "drills">;
  annotations: Record<string, string> | undefined;
  creationTimestamp: string | undefined;
  drills: readonly DrillStatus[] | undefined;
  run: DrillRun | undefined;
  /** The run's Job, when a run is in progress. */
  job?: DrillJobState;
  /** What a drill covers: each database and destination (spec.drills.destinations, or all). */
  targets: readonly DrillTarget[];
}

export interface DrillEvent {
  type: "Normal" | "Warning";
  reason: string;
  message: string;
}

export interface DrillDecision {
  drills: DrillStatus[] | undefined;
  run: DrillRun | undefined;
  condition?: Cond;
  /** Create this Job (idempotent: a 409 is fine). */
  create?: { name: string; request?: string };
  events: DrillEvent[];
  requeueAfterMs?: number;
}

const sameTarget = (
  a: { destination: string; database?: string },
  b: { destination: string; database?: string },
) => a.destination === b.destination && a.database === b.database;

/** The status entries of a report (or of a Job that gave none), `lastPassedAt` carried over. */
export function drillEntries(
  results: readonly DrillResult[] | undefined,
  fallback: { message: string; at: string },
  targets: readonly DrillTarget[],
  previous: readonly DrillStatus[],
  job: string,
): DrillStatus[] {
  const rows: DrillStatus[] = results
    ? results.map((r) => {
        const t = targets.find((x) => x.path === r.database && x.destination === r.destination);
        const database = t?.database;
        return {
          destination: r.destination,
          ...(database ? { database } : {}),
          at: r.at,
          outcome: r.outcome,
          ...(r.position ? { position: r.position } : {}),
          ...(r.lastCommit ? { lastCommitTime: r.lastCommit } : {}),
          ...(r.seconds !== undefined ? { restoreSeconds: r.seconds } : {}),
          ...(r.sizeBytes !== undefined ? { sizeBytes: r.sizeBytes } : {}),
          ...(r.pointInTime
            ? {
                pointInTime: {
                  timestamp: r.pointInTime.timestamp,
                  ...(r.pointInTime.position ? { position: r.pointInTime.position } : {}),
                  ...(r.pointInTime.lastCommit ? { lastCommitTime: r.pointInTime.lastCommit } : {}),
                  ...(r.pointInTime.seconds !== undefined ? { restoreSeconds: r.pointInTime.seconds } : {}),
                  ...(r.pointInTime.sizeBytes !== undefined ? { sizeBytes: r.pointInTime.sizeBytes } : {}),
                },
              }
            : {}),
          ...(r.message ? { message: r.message } : {}),
          job,
        };
      })
    : targets.map((t) => ({
        destination: t.destination,
        ...(t.database ? { database: t.database } : {}),
        at: fallback.at,
        outcome: "Failed" as const,
        message: fallback.message,
        job,
      }));
  return rows.map((row) => {
    const prev = previous.find((p) => sameTarget(p, row));
    const lastPassedAt = row.outcome === "Passed" ? row.at : prev?.lastPassedAt;
    return lastPassedAt ? { ...row, lastPassedAt } : row;
  });
}

/** The previous entries with `rows` in place of theirs, sorted by database then destination. */
function merge(previous: readonly DrillStatus[], rows: readonly DrillStatus[]): DrillStatus[] {
  const kept = previous.filter((p) => !rows.some((r) => sameTarget(p, r)));
  return [...kept, ...rows].sort(
    (a, b) =>
      (a.database ?? "").localeCompare(b.database ?? "") || a.destination.localeCompare(b.destination),
  );
}

function label(d: { destination: string; database?: string }): string {
  return d.database ? `${d.database}/${d.destination}` : d.destination;
}

/** DrillsPassing from the entries (undefined: drills were never asked for, say nothing). */
export function drillsCondition(
  drills: readonly DrillStatus[],
  configured: boolean,
  scheduleProblem: string | undefined,
  running: boolean,
): Cond | undefined {
  if (scheduleProblem)
    return {
      type: "DrillsPassing",
      status: "False",
      reason: "InvalidSchedule",
      message: `spec.drills.schedule: ${scheduleProblem}`,
    };
  if (drills.length === 0) {
    if (!configured && !running) return undefined;
    return {
      type: "DrillsPassing",
      status: "Unknown",
      reason: running ? "DrillRunning" : "NoDrillYet",
      message: running ? "the first drill is running" : "no drill has run yet",
    };
  }
  const failed = drills.filter((d) => d.outcome === "Failed");
  if (failed.length > 0) {
    return {
      type: "DrillsPassing",
      status: "False",
      reason: "DrillFailed",
      message: failed
        .map((d) => `${label(d)}: ${d.message ?? "failed"}`)
        .join("; ")
        .slice(0, 4000),
    };
  }
  const newest = drills
    .map((d) => d.at)
    .sort()
    .at(-1);
  return {
    type: "DrillsPassing",
    status: "True",
    reason: "DrillsPassed",
    message: `the last drill of ${drills.length} destination(s) passed (newest ${newest})`,
  };
}

/** One Event for a finished run: what passed (with its time to recover) and what failed. */
function runEvent(rows: readonly DrillStatus[], job: string): DrillEvent {
  const failed = rows.filter((r) => r.outcome === "Failed");
  if (failed.length > 0) {
    return {
      type: "Warning",
      reason: "DrillFailed",
      message: `drill ${job}: ${failed.map((r) => `${label(r)}: ${r.message ?? "failed"}`).join("; ")}`.slice(
        0,
        1000,
      ),
    };
  }
  return {
    type: "Normal",
    reason: "DrillPassed",
    message: `drill ${job}: ${rows
      .map(
        (r) =>
          `${label(r)} restored to ${r.position ?? "?"} in ${r.restoreSeconds ?? "?"}s (${r.sizeBytes ?? "?"} bytes)`,
      )
      .join("; ")}`.slice(0, 1000),
  };
}

/** The next decision for a SqliteReplica's drills (see the file's comment). */
export function decideDrill(o: DrillObserved): DrillDecision {
  const previous = o.drills ?? [];
  const cfg = o.spec.drills;
  const cron = cfg?.schedule ? parseCron(cfg.schedule) : undefined;
  const scheduleProblem = cron && "problem" in cron ? cron.problem : undefined;
  const request = o.annotations?.[DRILL_REQUESTED_ANNOTATION] || undefined;
  const out = (d: Omit<DrillDecision, "condition">): DrillDecision => {
    const running = d.run !== undefined && d.run.completedAt === undefined;
    const condition = drillsCondition(d.drills ?? [], cfg !== undefined, scheduleProblem, running);
    return { ...d, ...(condition ? { condition } : {}) };
  };

  // A run in progress: wait for its Job, then record what it found.
  const run = o.run;
  if (run && !run.completedAt) {
    const job = o.job ?? { state: "Running" };
    if (job.state === "Running")
      return out({
        drills: o.drills ? [...previous] : undefined,
        run,
        events: [],
        requeueAfterMs: DRILL_POLL_MS,
      });
    if (job.state === "Missing") {
      const age = o.now.getTime() - Date.parse(run.startedAt);
      if (!(age > DRILL_JOB_GRACE_MS)) {
        // Recorded, but the Job was not created (the operator stopped in between): create it now.
        return out({
          drills: o.drills ? [...previous] : undefined,
          run,
          create: { name: run.job, ...(run.request ? { request: run.request } : {}) },
          events: [],
          requeueAfterMs: DRILL_POLL_MS,
        });
      }
    }
    const at = o.now.toISOString();
    const report = job.state === "Missing" ? undefined : parseDrillReport(job.message ?? "");
    const why =
      job.state === "Missing"
        ? `the drill Job ${run.job} is gone before its result was read`
        : `the drill Job ${run.job} ${job.state === "Failed" ? "failed" : "ended"} without a report${job.reason ? ` (${job.reason})` : ""}${job.message ? `: ${job.message.slice(-300)}` : ""}`;
    const rows = drillEntries(report?.results, { message: why, at }, o.targets, previous, run.job);
    const drills = merge(previous, rows);
    return out({
      drills,
      run: { ...run, completedAt: at },
      events: [runEvent(rows, run.job)],
      ...next(o, cron, { ...run, completedAt: at }),
    });
  }

  // Due? On demand first, then the schedule. The annotation stays after its run, and a scheduled run
  // after it carries the answered value on, so a request is answered once, not after every slot.
  const answered = run?.request ?? run?.answeredRequest;
  if (request && request !== answered) {
    const name = drillJobName(o.name, requestKey(request));
    return out({
      drills: o.drills ? [...previous] : undefined,
      run: { job: name, startedAt: o.now.toISOString(), request },
      create: { name, request },
      events: [
        {
          type: "Normal",
          reason: "DrillStarted",
          message: `drill ${name} started on request (${DRILL_REQUESTED_ANNOTATION}: ${request})`,
        },
      ],
      requeueAfterMs: DRILL_POLL_MS,
    });
  }
  if (cron && !("problem" in cron)) {
    const from = new Date(run?.startedAt ?? o.creationTimestamp ?? o.now.toISOString());
    const slot = nextCronTime(cron, from);
    if (slot && slot.getTime() <= o.now.getTime()) {
      const name = drillJobName(o.name, slotKey(slot));
      return out({
        drills: o.drills ? [...previous] : undefined,
        // Started now: the next slot is the first after now, so a missed slot runs once.
        run: {
          job: name,
          startedAt: o.now.toISOString(),
          ...(answered ? { answeredRequest: answered } : {}),
        },
        create: { name },
        events: [
          {
            type: "Normal",
            reason: "DrillStarted",
            message: `drill ${name} started on schedule (${cfg?.schedule})`,
          },
        ],
        requeueAfterMs: DRILL_POLL_MS,
      });
    }
  }
  return out({ drills: o.drills ? [...previous] : undefined, run, events: [], ...next(o, cron, run) });
}

/** When the next scheduled drill is due, as a requeue (none without a valid schedule). */
function next(
  o: DrillObserved,
  cron: ReturnType<typeof parseCron> | undefined,
  run: DrillRun | undefined,
): { requeueAfterMs?: number } {
  if (!cron || "problem" in cron) return {};
  const from = new Date(run?.startedAt ?? o.creationTimestamp ?? o.now.toISOString());
  const slot = nextCronTime(cron, from);
  if (!slot) return {};
  return { requeueAfterMs: Math.max(1000, slot.getTime() - o.now.getTime()) };
}
