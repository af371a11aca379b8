/** Every Prometheus metric of `walship operator`, declared here and nowhere else. */
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";
import { observeRequests } from "./kube/client.ts";

/**
 * The Kubernetes API requests of this process (every KubeClient), counted from the first import on:
 * one counter per process, registered in every registry createOperatorMetrics makes.
 */
const kubeRequests = new Counter({
  name: "walship_operator_kube_requests_total",
  help: "Requests to the Kubernetes API server, by verb, resource and HTTP status code ('error': no answer).",
  labelNames: ["verb", "resource", "code"],
  registers: [],
});
observeRequests((verb, resource, code) => kubeRequests.inc({ verb, resource, code }));

export interface OperatorMetrics {
  registry: Registry;
  reconciles: Counter<"result">;
  reconcileErrors: Counter;
  reconcileSeconds: Histogram;
  queueDepth: Gauge;
  leader: Gauge;
  informerRestarts: Counter<"resource">;
  kubeRequests: Counter<"verb" | "resource" | "code">;
}

/** `drills`: the SqliteReplicas' last drills, read at each scrape (registerDrillMetrics). */
export function createOperatorMetrics(
  depth: () => number,
  drills: () => DrillFacts[] = () => [],
): OperatorMetrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  registry.registerMetric(kubeRequests);
  registerDrillMetrics(registry, drills);
  return {
    registry,
    reconciles: new Counter({
      name: "walship_operator_reconcile_total",
      help: "Reconciles of SqliteReplicas, by result (success, requeue, error).",
      labelNames: ["result"],
      registers: [registry],
    }),
    reconcileErrors: new Counter({
      name: "walship_operator_reconcile_errors_total",
      help: "Reconciles that failed and were retried with backoff.",
      registers: [registry],
    }),
    reconcileSeconds: new Histogram({
      name: "walship_operator_reconcile_duration_seconds",
      help: "How long one reconcile took.",
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: [registry],
    }),
    queueDepth: new Gauge({
      name: "walship_operator_workqueue_depth",
      help: "Keys waiting in the work queue.",
      registers: [registry],
      collect() {
        this.set(depth());
      },
    }),
    leader: new Gauge({
      name: "walship_operator_leader",
      help: "1 while this process holds the leader Lease.",
      registers: [registry],
    }),
    informerRestarts: new Counter({
      name: "walship_operator_informer_restarts_total",
      help: "Informer list/watch restarts after an error, by resource.",
      labelNames: ["resource"],
      registers: [registry],
    }),
    kubeRequests,
  };
}

/** One destination's last drill, as the drill metrics read it (status.drills of a SqliteReplica). */
export interface DrillFacts {
  namespace: string;
  sqlitereplica: string;
  database?: string;
  destination: string;
  outcome: "Passed" | "Failed";
  at: string;
  lastPassedAt?: string;
  restoreSeconds?: number;
  sizeBytes?: number;
}

/**
 * The restore drill gauges, read at each scrape from `list()` (the SqliteReplicas' status.drills in
 * the informer's cache): they hold no state of their own, so a standby (empty cache) exports none and
 * a deleted SqliteReplica's series go with it.
 */
function registerDrillMetrics(registry: Registry, list: () => DrillFacts[]): void {
  // Not `namespace`: a scrape of the operator sets that label to the operator's own namespace.
  const labelNames = ["sqlitereplica_namespace", "sqlitereplica", "database", "destination"] as const;
  const labels = (d: DrillFacts) => ({
    sqlitereplica_namespace: d.namespace,
    sqlitereplica: d.sqlitereplica,
    database: d.database ?? "",
    destination: d.destination,
  });
  const seconds = (t: string | undefined) => (t ? Date.parse(t) / 1000 : Number.NaN);
  const gauge = (name: string, help: string, value: (d: DrillFacts) => number | undefined) =>
    new Gauge({
      name,
      help,
      labelNames,
      registers: [registry],
      collect() {
        this.reset();
        for (const d of list()) {
          const v = value(d);
          if (v !== undefined && Number.isFinite(v)) this.set(labels(d), v);
        }
      },
    });
  gauge("walship_drill_last_outcome", "The last restore drill of a destination: 1 passed, 0 failed.", (d) =>
    d.outcome === "Passed" ? 1 : 0,
  );
  gauge(
    "walship_drill_last_run_timestamp_seconds",
    "When the last restore drill of a destination finished (Unix seconds).",
    (d) => seconds(d.at),
  );
  gauge(
    "walship_drill_last_success_timestamp_seconds",
    "When a restore drill of a destination last passed (Unix seconds); 0 when none has passed yet.",
    (d) => (d.lastPassedAt ? seconds(d.lastPassedAt) : 0),
  );
  gauge(
    "walship_drill_restore_seconds",
    "How long the last passing restore drill's restore of the latest state took: the measured time to recover.",
    (d) => (d.outcome === "Passed" ? d.restoreSeconds : undefined),
  );
  gauge(
    "walship_drill_restored_size_bytes",
    "The size of the database the last passing restore drill restored.",
    (d) => (d.outcome === "Passed" ? d.sizeBytes : undefined),
  );
}
