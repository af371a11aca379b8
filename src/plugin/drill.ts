/**
 * `kubectl walship drill NAME`: asks the operator for a restore drill now, by setting the annotation
 * walship.dev/drill-requested to the current time; with --wait, polls the SqliteReplica until the run
 * that answers it completed and prints each destination's result (exit 1 when one failed).
 */
import { DRILL_REQUESTED_ANNOTATION, type DrillStatus } from "../api/v1alpha1/index.ts";
import { ErrorCodes, WalshipError } from "../shared/errors.ts";
import { ago, bytes, cell, indentTable } from "./format.ts";
import type { PluginKube, ReplicaObject } from "./kube.ts";

/** One line per destination's drill. */
export function drillLine(d: DrillStatus): string {
  const who = d.database ? `${d.database}/${d.destination}` : d.destination;
  if (d.outcome === "Failed") return `${who}: Failed: ${d.message ?? "no reason given"}`;
  const pit = d.pointInTime
    ? `; point in time ${d.pointInTime.timestamp}: ${d.pointInTime.position ?? "?"} in ${d.pointInTime.restoreSeconds ?? "?"}s`
    : "";
  return `${who}: Passed: restored to ${d.position ?? "?"} in ${d.restoreSeconds ?? "?"}s (${d.sizeBytes ?? "?"} bytes)${pit}`;
}

/**
 * Requests a drill of `name` (the annotation set to `now`); with `wait`, resolves with the drills the
 * run answering it recorded, once it completed.
 */
export async function requestDrill(
  kube: PluginKube,
  name: string,
  now: Date,
  opts: { wait: boolean; timeoutMs: number; signal?: AbortSignal; pollMs?: number },
): Promise<{ request: string; drills?: DrillStatus[]; object?: ReplicaObject }> {
  const request = now.toISOString();
  await kube.annotateReplica(name, { [DRILL_REQUESTED_ANNOTATION]: request });
  if (!opts.wait) return { request };
  const deadline = opts.timeoutMs > 0 ? Date.now() + opts.timeoutMs : Number.POSITIVE_INFINITY;
  for (;;) {
    const o = await kube.getReplica(name);
    const run = o.status?.drillRun;
    if (run?.request === request && run.completedAt) {
      return { request, drills: (o.status?.drills ?? []).filter((d) => d.job === run.job), object: o };
    }
    if (opts.signal?.aborted || Date.now() > deadline) {
      const where = run?.request === request ? `Job ${run.job} running` : "not started yet";
      throw new WalshipError(
        ErrorCodes.ABORTED,
        `drill ${name}: ${opts.signal?.aborted ? "interrupted" : "not done in time"} (${where}); ` +
          "it goes on (kubectl walship status, kubectl get sqlitereplica -o yaml)",
      );
    }
    await new Promise((r) => setTimeout(r, opts.pollMs ?? 1000));
  }
}

/** The status report's "Drills:" table: each destination's last drill. */
export function drillTable(drills: readonly DrillStatus[], now: Date): string {
  return indentTable(
    ["DESTINATION", "OUTCOME", "WHEN", "RESTORED TO", "TIME TO RECOVER", "SIZE", "LAST PASSED", "MESSAGE"],
    drills.map((d) => [
      d.database ? `${d.database}/${d.destination}` : d.destination,
      d.outcome,
      ago(d.at, now),
      d.position ?? "-",
      d.restoreSeconds === undefined ? "-" : `${d.restoreSeconds}s`,
      d.sizeBytes === undefined ? "-" : bytes(d.sizeBytes),
      ago(d.lastPassedAt, now),
      cell(d.message ?? "", 60),
    ]),
  );
}
