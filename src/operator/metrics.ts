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

export function createOperatorMetrics(depth: () => number): OperatorMetrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  registry.registerMetric(kubeRequests);
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
