/**
 * `walship operator`: watches SqliteReplicas (and the StatefulSets they name), reconciles them from a
 * keyed work queue, and serves /metrics, /healthz and /readyz. One leader at a time (Lease); the
 * others wait. SIGTERM/SIGINT: stop taking work, let running reconciles finish (bounded), give the
 * Lease up, exit 0.
 */
import { createServer, type Server } from "node:http";
import os from "node:os";
import { isDeepStrictEqual } from "node:util";
import { API_VERSION, SQLITE_REPLICA_PLURAL, SQLITE_RESTORE_PLURAL } from "../api/v1alpha1/index.ts";
import { describeError, ErrorCodes, WalshipError } from "../shared/errors.ts";
import { type FlagSpec, parseFlags } from "../shared/flags.ts";
import { createLogger, type Logger } from "../shared/log.ts";
import { KubeClient } from "./kube/client.ts";
import { EventRecorder } from "./kube/events.ts";
import { InformerSet, keyOf } from "./kube/informer.ts";
import { LeaderElector } from "./kube/leader.ts";
import type { StatefulSet } from "./kube/types.ts";
import { WorkQueue } from "./kube/workqueue.ts";
import { createOperatorMetrics, type OperatorMetrics } from "./metrics.ts";
import { type SqliteReplicaObject, SqliteReplicaReconciler } from "./replica/reconcile.ts";
import { type SqliteRestoreObject, SqliteRestoreReconciler } from "./restore/controller.ts";

const RESTORE_KEY_PREFIX = "restore:";

export interface OperatorOptions {
  kubeconfig?: string;
  /** Watch only these namespaces (an informer per namespace and resource); all when empty or unset. */
  namespaces?: string[];
  leaderElection: boolean;
  leaderElectionNamespace: string;
  leaderElectionId: string;
  identity: string;
  /** host:port for /metrics, /healthz, /readyz; "" = none. */
  addr: string;
  image?: string;
  bindPodIP: boolean;
  workers: number;
  resyncMs: number;
  /** How often a healthy SqliteReplica's pods are polled. */
  pollMs: number;
  shutdownTimeoutMs: number;
}

export const OPERATOR_FLAGS: FlagSpec[] = [
  {
    name: "kubeconfig",
    type: "string",
    metavar: "PATH",
    help: "kubeconfig file (default: $KUBECONFIG, ~/.kube/config, in-cluster)",
  },
  {
    name: "namespace",
    type: "string",
    metavar: "NS[,NS...]",
    help: "watch only these namespaces (default: all); needs rights in these only",
  },
  { name: "leader-elect", type: "boolean", default: true, help: "elect one leader with a Lease" },
  {
    name: "leader-election-namespace",
    type: "string",
    metavar: "NS",
    help: "the Lease's namespace (default: $POD_NAMESPACE, else the kubeconfig's)",
  },
  {
    name: "leader-election-id",
    type: "string",
    metavar: "NAME",
    default: "walship-operator",
    help: "the Lease's name",
  },
  {
    name: "addr",
    type: "string",
    metavar: "HOST:PORT",
    default: ":8080",
    help: "/metrics, /healthz, /readyz listener; empty for none",
  },
  {
    name: "image",
    type: "string",
    metavar: "IMAGE",
    help: "the walship image injected when a SqliteReplica names none",
  },
  {
    name: "sidecar-bind-pod-ip",
    type: "boolean",
    default: false,
    help: "sidecars listen on the pod IP only (pods sharing a network namespace)",
  },
  { name: "workers", type: "string", metavar: "N", default: "2", help: "concurrent reconciles" },
  {
    name: "resync",
    type: "string",
    metavar: "SECONDS",
    default: "300",
    help: "re-queue every SqliteReplica, and repeat its applies and Secret checks, this often",
  },
  {
    name: "poll",
    type: "string",
    metavar: "SECONDS",
    default: "10",
    help: "poll a healthy SqliteReplica's sidecars this often (from 3 s, backing off, while not settled)",
  },
  { name: "log-format", type: "string", metavar: "FORMAT", default: "json", help: "json or text" },
];

function int(flag: string, v: string | boolean | undefined, min: number): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < min)
    throw new WalshipError(
      ErrorCodes.USAGE,
      `parse flags: -${flag} must be an integer >= ${min}, not "${String(v)}"`,
    );
  return n;
}

/** `-namespace a,b`: DNS labels, de-duplicated, in order. */
export function namespaceList(value: string | undefined): string[] {
  if (value === undefined) return [];
  const out: string[] = [];
  for (const ns of value.split(",").map((x) => x.trim())) {
    if (!/^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/.test(ns)) {
      throw new WalshipError(
        ErrorCodes.USAGE,
        `parse flags: -namespace: ${JSON.stringify(ns)} is not a namespace name (a DNS label)`,
      );
    }
    if (!out.includes(ns)) out.push(ns);
  }
  return out;
}

export function optionsFromFlags(
  argv: string[],
  env: NodeJS.ProcessEnv = process.env,
): OperatorOptions & { logFormat: "json" | "text" } {
  const { values: f, args } = parseFlags("operator", OPERATOR_FLAGS, argv);
  if (args.length > 0)
    throw new WalshipError(ErrorCodes.USAGE, `parse flags: unexpected arguments: ${args.join(" ")}`);
  const logFormat = f["log-format"] === "text" ? "text" : "json";
  const str = (k: string) => (typeof f[k] === "string" && f[k] !== "" ? (f[k] as string) : undefined);
  return {
    ...(str("kubeconfig") ? { kubeconfig: str("kubeconfig") } : {}),
    namespaces: namespaceList(str("namespace")),
    leaderElection: f["leader-elect"] === true,
    leaderElectionNamespace: str("leader-election-namespace") ?? env.POD_NAMESPACE ?? "",
    leaderElectionId: str("leader-election-id") ?? "walship-operator",
    identity: `${env.POD_NAME ?? os.hostname()}_${process.pid}_${Math.random().toString(16).slice(2, 8)}`,
    addr: typeof f.addr === "string" ? f.addr : ":8080",
    ...(str("image") ? { image: str("image") } : {}),
    bindPodIP: f["sidecar-bind-pod-ip"] === true,
    workers: int("workers", f.workers, 1),
    resyncMs: int("resync", f.resync, 1) * 1000,
    pollMs: int("poll", f.poll, 1) * 1000,
    shutdownTimeoutMs: 10_000,
    logFormat,
  };
}

export interface RunningOperator {
  /** The health/metrics URL, when listening. */
  url?: string;
  metrics: OperatorMetrics;
  /** Resolves when the operator has stopped (after stop() or losing the Lease). */
  done: Promise<void>;
  stop(): Promise<void>;
}

function listen(server: Server, addr: string): Promise<string> {
  const m = /^(\[[^\]]*\]|[^:[\]]*):(\d{1,5})$/.exec(addr);
  if (!m)
    throw new WalshipError(ErrorCodes.USAGE, `parse flags: -addr ${JSON.stringify(addr)} is not host:port`);
  const host = m[1]?.replace(/^\[|\]$/g, "") || undefined;
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(Number(m[2]), host, () => {
      const a = server.address();
      resolve(
        typeof a === "object" && a
          ? `http://${a.address.includes(":") ? `[${a.address}]` : a.address}:${a.port}`
          : "",
      );
    });
  });
}

/** Starts the operator; returns once it listens (leadership and informers continue in the background). */
export async function startOperator(opts: OperatorOptions, log: Logger): Promise<RunningOperator> {
  const client = KubeClient.load(opts.kubeconfig);
  const queue = new WorkQueue({ baseDelayMs: 500, maxDelayMs: 60_000 });
  const metrics = createOperatorMetrics(() => queue.depth);
  const abort = new AbortController();
  const signal = abort.signal;
  const crPath = (ns: string | undefined) =>
    ns
      ? `/apis/${API_VERSION}/namespaces/${ns}/${SQLITE_REPLICA_PLURAL}`
      : `/apis/${API_VERSION}/${SQLITE_REPLICA_PLURAL}`;
  const stsPath = (ns: string | undefined) =>
    ns ? `/apis/apps/v1/namespaces/${ns}/statefulsets` : "/apis/apps/v1/statefulsets";
  const namespaces = opts.namespaces ?? [];

  // Set below; the handlers run only once the informers do, after it is.
  let reconciler: SqliteReplicaReconciler | undefined;
  const replicas: InformerSet<SqliteReplicaObject> = new InformerSet<SqliteReplicaObject>(
    client,
    crPath,
    namespaces,
    { resyncMs: opts.resyncMs },
    {
      onUpdate: (o, old) => {
        if (old && (onlyStatusChanged(old, o) || reconciler?.isOwnReplicaWrite(o))) return;
        queue.add(keyOf(o));
      },
      onDelete: (o) => {
        reconciler?.forget(keyOf(o));
        queue.add(keyOf(o));
      },
      onError: (err) => {
        metrics.informerRestarts.inc({ resource: "sqlitereplicas" });
        log.warn({ err: describeError(err) }, "sqlitereplica informer restarting");
      },
    },
  );
  const requeueFor = (sts: StatefulSet) => {
    if (reconciler?.isOwnWrite(sts)) return;
    for (const r of replicas.list()) {
      const spec = r.spec as { statefulSetName?: string } | undefined;
      if (r.metadata?.namespace === sts.metadata?.namespace && spec?.statefulSetName === sts.metadata?.name) {
        queue.add(keyOf(r));
      }
    }
  };
  const statefulSets = new InformerSet<StatefulSet>(
    client,
    stsPath,
    namespaces,
    { resyncMs: opts.resyncMs * 10 },
    {
      onUpdate: requeueFor,
      onDelete: requeueFor,
      onError: (err) => {
        metrics.informerRestarts.inc({ resource: "statefulsets" });
        log.warn({ err: describeError(err) }, "statefulset informer restarting");
      },
    },
  );

  // SqliteRestores share the queue under keys "restore:<namespace>/<name>".
  const restorePath = (ns: string | undefined) =>
    ns
      ? `/apis/${API_VERSION}/namespaces/${ns}/${SQLITE_RESTORE_PLURAL}`
      : `/apis/${API_VERSION}/${SQLITE_RESTORE_PLURAL}`;
  const restoreKey = (o: SqliteRestoreObject) => `${RESTORE_KEY_PREFIX}${keyOf(o)}`;
  const restores = new InformerSet<SqliteRestoreObject>(
    client,
    restorePath,
    namespaces,
    { resyncMs: opts.resyncMs },
    {
      onUpdate: (o) => queue.add(restoreKey(o)),
      onDelete: () => {},
      onError: (err) => {
        metrics.informerRestarts.inc({ resource: "sqliterestores" });
        log.warn({ err: describeError(err) }, "sqliterestore informer restarting");
      },
    },
  );

  const events = new EventRecorder(client, opts.identity);
  reconciler = new SqliteReplicaReconciler({
    client,
    events,
    log,
    listReplicas: () => replicas.list(),
    getReplica: (key) => replicas.get(key),
    getStatefulSet: (key) => statefulSets.get(key),
    options: {
      ...(opts.image ? { image: opts.image } : {}),
      bindPodIP: opts.bindPodIP,
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
  const server = createServer(async (req, res) => {
    const path = (req.url ?? "/").split("?")[0];
    if (path === "/healthz") {
      res.writeHead(200, { "content-type": "text/plain" }).end("ok\n");
    } else if (path === "/readyz") {
      // A standby is ready (it is waiting for the Lease); the leader once its caches are filled.
      const ready = !stopping && (!leading || (replicas.synced && statefulSets.synced && restores.synced));
      res.writeHead(ready ? 200 : 503, { "content-type": "text/plain" }).end(ready ? "ok\n" : "not ready\n");
    } else if (path === "/metrics") {
      try {
        const body = await metrics.registry.metrics();
        res.writeHead(200, { "content-type": metrics.registry.contentType }).end(body);
      } catch (err) {
        res.writeHead(500).end(describeError(err));
      }
    } else {
      res.writeHead(404).end("not found\n");
    }
  });
  const url = opts.addr === "" ? undefined : await listen(server, opts.addr);

  const inflight = new Set<Promise<void>>();
  const worker = async (): Promise<void> => {
    for (;;) {
      const key = await queue.get();
      if (key === undefined) return;
      const started = process.hrtime.bigint();
      const run = (async () => {
        try {
          const r = key.startsWith(RESTORE_KEY_PREFIX)
            ? await restoreReconciler.reconcile(key.slice(RESTORE_KEY_PREFIX.length))
            : await replicaReconciler.reconcile(key);
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
      })();
      inflight.add(run);
      await run;
      inflight.delete(run);
    }
  };

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
    const runs = [replicas.run(signal), statefulSets.run(signal), restores.run(signal)];
    // Reconciles read the caches: a StatefulSet not cached yet must not look deleted.
    await Promise.all([replicas.waitSynced(signal), statefulSets.waitSynced(signal)]);
    const workers = Array.from({ length: opts.workers }, () => worker());
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
    await new Promise<void>((r) => server.close(() => r()));
  };
  return { ...(url ? { url } : {}), metrics, done, stop };
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
