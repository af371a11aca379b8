/**
 * `walship operator`: watches SqliteReplicas (and the StatefulSets and Deployments they name) and SqliteRestores,
 * reconciles them from one keyed work queue, and serves /metrics, /healthz and /readyz. One leader
 * at a time (Lease); the others wait. SIGTERM/SIGINT: stop taking work, let running reconciles finish
 * (bounded), give the Lease up, exit 0.
 *
 * This file is the wiring: the informers (informerFor), the reconcilers, the probe server
 * (shared/http.ts), the workers (worker.ts) and the leadership.
 */
import { isDeepStrictEqual } from "node:util";
import {
  API_VERSION,
  SQLITE_REPLICA_PLURAL,
  SQLITE_RESTORE_PLURAL,
  type WorkloadKind,
  workloadOf,
} from "../api/v1alpha1/index.ts";
import { describeError, ErrorCodes, WalshipError } from "../shared/errors.ts";
import { type HttpServer, healthz, send, serveHttp, splitListenAddr, TEXT_TYPE } from "../shared/http.ts";
import { createLogger, type Logger } from "../shared/log.ts";
import { KubeClient } from "./kube/client.ts";
import { EventRecorder } from "./kube/events.ts";
import { type InformerHandlers, InformerSet, keyOf } from "./kube/informer.ts";
import { LeaderElector } from "./kube/leader.ts";
import type { Deployment, KubeObject, StatefulSet } from "./kube/types.ts";
import { WorkQueue } from "./kube/workqueue.ts";
import { createOperatorMetrics, type OperatorMetrics } from "./metrics.ts";
import { type OperatorOptions, optionsFromFlags } from "./options.ts";
import { type SqliteReplicaObject, SqliteReplicaReconciler } from "./replica/reconcile.ts";
import { type SqliteRestoreObject, SqliteRestoreReconciler } from "./restore/controller.ts";
import { RESTORE_KEY_PREFIX, restoreKey, runWorker } from "./worker.ts";

export interface RunningOperator {
  /** The health/metrics URL, when listening. */
  url?: string;
  metrics: OperatorMetrics;
  /** Resolves when the operator has stopped (after stop() or losing the Lease). */
  done: Promise<void>;
  stop(): Promise<void>;
}

/** Starts the operator; returns once it listens (leadership and informers continue in the background). */
export async function startOperator(opts: OperatorOptions, log: Logger): Promise<RunningOperator> {
  const client = KubeClient.load(opts.kubeconfig);
  const queue = new WorkQueue({ baseDelayMs: 500, maxDelayMs: 60_000 });
  const metrics = createOperatorMetrics(
    () => queue.depth,
    () =>
      replicas.list().flatMap((r) =>
        (r.status?.drills ?? []).map((d) => ({
          ...d,
          namespace: r.metadata?.namespace ?? "",
          sqlitereplica: r.metadata?.name ?? "",
        })),
      ),
  );
  const abort = new AbortController();
  const signal = abort.signal;

  /** One resource's informers (one per watched namespace), counting and logging their restarts. */
  const informerFor = <T extends KubeObject>(
    apiPrefix: string,
    plural: string,
    resyncMs: number,
    handlers: Omit<InformerHandlers<T>, "onError">,
  ): InformerSet<T> =>
    new InformerSet<T>(
      client,
      (ns) => (ns ? `${apiPrefix}/namespaces/${ns}/${plural}` : `${apiPrefix}/${plural}`),
      opts.namespaces ?? [],
      { resyncMs },
      {
        ...handlers,
        onError: (err) => {
          metrics.informerRestarts.inc({ resource: plural });
          log.warn({ resource: plural, err: describeError(err) }, "informer restarting");
        },
      },
    );

  // Set below; the handlers run only once the informers do, after it is.
  let reconciler: SqliteReplicaReconciler | undefined;
  const replicas: InformerSet<SqliteReplicaObject> = informerFor<SqliteReplicaObject>(
    `/apis/${API_VERSION}`,
    SQLITE_REPLICA_PLURAL,
    opts.resyncMs,
    {
      onUpdate: (o, old) => {
        if (old && (onlyStatusChanged(old, o) || reconciler?.isOwnReplicaWrite(o))) return;
        queue.add(keyOf(o));
      },
      onDelete: (o) => {
        reconciler?.forget(keyOf(o));
        queue.add(keyOf(o));
      },
    },
  );
  /** Queues the SqliteReplicas that name this workload of `kind`. */
  const requeueFor = (kind: WorkloadKind) => (w: StatefulSet | Deployment) => {
    if (reconciler?.isOwnWrite(w)) return;
    for (const r of replicas.list()) {
      const ref = workloadOf(r.spec);
      if (
        r.metadata?.namespace === w.metadata?.namespace &&
        ref?.kind === kind &&
        ref.name === w.metadata?.name
      ) {
        queue.add(keyOf(r));
      }
    }
  };
  const statefulSets = informerFor<StatefulSet>("/apis/apps/v1", "statefulsets", opts.resyncMs * 10, {
    onUpdate: requeueFor("StatefulSet"),
    onDelete: requeueFor("StatefulSet"),
  });
  const deployments = informerFor<Deployment>("/apis/apps/v1", "deployments", opts.resyncMs * 10, {
    onUpdate: requeueFor("Deployment"),
    onDelete: requeueFor("Deployment"),
  });
  // SqliteRestores share the queue under keys "restore:<namespace>/<name>".
  const restores = informerFor<SqliteRestoreObject>(
    `/apis/${API_VERSION}`,
    SQLITE_RESTORE_PLURAL,
    opts.resyncMs,
    { onUpdate: (o) => queue.add(restoreKey(o)), onDelete: () => {} },
  );

  const events = new EventRecorder(client, opts.identity);
  reconciler = new SqliteReplicaReconciler({
    client,
    events,
    log,
    listReplicas: () => replicas.list(),
    getReplica: (key) => replicas.get(key),
    getStatefulSet: (key) => statefulSets.get(key),
    getDeployment: (key) => deployments.get(key),
    options: {
      ...(opts.image ? { image: opts.image } : {}),
      ...(opts.leaseRole ? { leaseRole: opts.leaseRole } : {}),
      pollMs: opts.pollMs,
      applyEveryMs: opts.resyncMs,
    },
  });
  const replicaReconciler = reconciler;
  const restoreReconciler = new SqliteRestoreReconciler({
    client,
    events,
    log,
    listRestores: () => restores.list(),
    options: opts.image ? { image: opts.image } : {},
  });

  let leading = !opts.leaderElection;
  let stopping = false;
  const server =
    opts.addr === ""
      ? undefined
      : await probeServer(opts.addr, metrics, log, () => {
          // A standby is ready (it is waiting for the Lease); the leader once its caches are filled.
          return (
            !stopping &&
            (!leading || (replicas.synced && statefulSets.synced && deployments.synced && restores.synced))
          );
        });

  const reconcile = (key: string) =>
    key.startsWith(RESTORE_KEY_PREFIX)
      ? restoreReconciler.reconcile(key.slice(RESTORE_KEY_PREFIX.length))
      : replicaReconciler.reconcile(key);

  const elector = opts.leaderElection
    ? new LeaderElector(client, {
        namespace: opts.leaderElectionNamespace || client.defaultNamespace,
        name: opts.leaderElectionId,
        identity: opts.identity,
      })
    : undefined;

  const done = (async () => {
    if (elector) {
      log.info({ identity: opts.identity }, "waiting for the leader lease");
      const won = await elector.acquire(
        signal,
        () => {
          log.error({}, "leader lease lost; stopping");
          abort.abort();
        },
        (err) => log.warn({ err: describeError(err) }, "leader election error"),
      );
      if (!won) return;
      leading = true;
      metrics.leader.set(1);
      log.info({ identity: opts.identity }, "leading");
    }
    const runs = [
      replicas.run(signal),
      statefulSets.run(signal),
      deployments.run(signal),
      restores.run(signal),
    ];
    // Reconciles read the caches: a StatefulSet or Deployment not cached yet must not look deleted.
    await Promise.all([
      replicas.waitSynced(signal),
      statefulSets.waitSynced(signal),
      deployments.waitSynced(signal),
    ]);
    const workers = Array.from({ length: opts.workers }, () => runWorker(queue, reconcile, metrics, log));
    await new Promise<void>((resolve) => signal.addEventListener("abort", () => resolve(), { once: true }));
    queue.shutdown();
    await Promise.race([
      Promise.all([...workers, ...runs]),
      new Promise((r) => setTimeout(r, opts.shutdownTimeoutMs).unref()),
    ]);
    metrics.leader.set(0);
    await elector?.release();
  })();

  const stop = async () => {
    stopping = true;
    abort.abort();
    await done;
    await server?.close();
  };
  return { ...(server ? { url: server.url } : {}), metrics, done, stop };
}

/** /healthz, /readyz (`ready()`) and /metrics on `addr`. */
async function probeServer(
  addr: string,
  metrics: OperatorMetrics,
  log: Logger,
  ready: () => boolean,
): Promise<HttpServer> {
  const where = splitListenAddr(addr);
  if (!where)
    throw new WalshipError(ErrorCodes.USAGE, `parse flags: -addr ${JSON.stringify(addr)} is not host:port`);
  return serveHttp(
    where,
    {
      "/healthz": healthz,
      "/readyz": async (res) => {
        const ok = ready();
        send(res, ok ? 200 : 503, TEXT_TYPE, ok ? "ok\n" : "not ready\n");
      },
      "/metrics": async (res) => {
        send(res, 200, metrics.registry.contentType, await metrics.registry.metrics());
      },
    },
    log.child({ component: "http" }),
  );
}

/**
 * True when `now` differs from `old` in its status (or bookkeeping) only: the operator's own status
 * writes come back as such events, and they need no reconcile (the operator writes status alone).
 */
export function onlyStatusChanged(old: SqliteReplicaObject, now: SqliteReplicaObject): boolean {
  const m = (o: SqliteReplicaObject) => ({
    generation: o.metadata?.generation,
    uid: o.metadata?.uid,
    deletionTimestamp: o.metadata?.deletionTimestamp,
    finalizers: o.metadata?.finalizers,
    labels: o.metadata?.labels,
    annotations: o.metadata?.annotations,
  });
  return isDeepStrictEqual(m(old), m(now));
}

/** `walship operator [flags]`: runs until SIGTERM/SIGINT; returns the exit code. */
export async function runOperator(argv: string[]): Promise<number> {
  const opts = optionsFromFlags(argv);
  const log = createLogger({ format: opts.logFormat });
  const op = await startOperator(opts, log);
  log.info(
    { url: op.url, namespaces: opts.namespaces?.length ? opts.namespaces : "(all)" },
    "walship operator started",
  );
  let signalled = false;
  const onSignal = (sig: string) => {
    if (signalled) return;
    signalled = true;
    log.info({ signal: sig }, "shutting down");
    void op.stop();
  };
  process.on("SIGTERM", onSignal);
  process.on("SIGINT", onSignal);
  await op.done;
  await op.stop();
  log.info({}, "stopped");
  return signalled ? 0 : 1;
}
