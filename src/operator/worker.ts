/**
 * A reconcile worker: takes keys from the queue until it shuts down, reconciles each, and requeues
 * it as the result says (a later look) or with the queue's backoff (an error, logged here: the one
 * loop boundary of the operator).
 */
import { describeError } from "../shared/errors.ts";
import type { Logger } from "../shared/log.ts";
import { keyOf } from "./kube/informer.ts";
import type { KubeObject } from "./kube/types.ts";
import type { WorkQueue } from "./kube/workqueue.ts";
import type { OperatorMetrics } from "./metrics.ts";

/** SqliteRestores share the queue with SqliteReplicas under keys `restore:<namespace>/<name>`. */
export const RESTORE_KEY_PREFIX = "restore:";

export function restoreKey(o: KubeObject): string {
  return `${RESTORE_KEY_PREFIX}${keyOf(o)}`;
}

export type Reconcile = (key: string) => Promise<{ requeueAfterMs?: number }>;

export async function runWorker(
  queue: WorkQueue,
  reconcile: Reconcile,
  metrics: OperatorMetrics,
  log: Logger,
): Promise<void> {
  for (;;) {
    const key = await queue.get();
    if (key === undefined) return;
    const started = process.hrtime.bigint();
    try {
      const r = await reconcile(key);
      queue.forget(key);
      metrics.reconciles.inc({ result: r.requeueAfterMs !== undefined ? "requeue" : "success" });
      if (r.requeueAfterMs !== undefined) queue.addAfter(key, r.requeueAfterMs);
    } catch (err) {
      metrics.reconciles.inc({ result: "error" });
      metrics.reconcileErrors.inc();
      const delay = queue.addRateLimited(key);
      log.warn({ key, err: describeError(err), retryMs: delay }, "reconcile failed");
    } finally {
      metrics.reconcileSeconds.observe(Number(process.hrtime.bigint() - started) / 1e9);
      queue.done(key);
    }
  }
}
