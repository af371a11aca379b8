/**
 * The operator alone (issue 8): `walship operator` (bin/walship, default flags) against the real local
 * control plane of the tests (etcd, kube-apiserver, kube-controller-manager; test/helpers/controlplane.ts).
 * There is no litestream counterpart: these are Walship's figures only. See docs/benchmarks.md.
 *
 *   1. create N StatefulSets (replicas 0), then N SqliteReplicas, and time each from its create to
 *      reconciled: status.observedGeneration == metadata.generation and Injected=True (the ConfigMap
 *      is applied, the Secrets checked, the StatefulSet carries the sidecar);
 *   2. idle with no pods (the state step 1 leaves): API requests per minute;
 *   3. restart the operator cold with the N present: time to /readyz and to N reconciles (full resync);
 *   4. scale every StatefulSet to 1 and play the kubelet's part for the N pods: Running, with the
 *      sidecar started, its /status served by one fake sidecar (no real one can run 200 times on this
 *      machine); wait for all Ready, then idle again: API requests per minute in the settled state.
 *
 * Requests are counted by the operator (walship_operator_kube_requests_total, scraped from its
 * /metrics) and cross-checked with the apiserver's apiserver_request_total for group walship.dev.
 * CPU and peak RSS come from /proc of the operator's Node process.
 *
 *   node bench/operator.ts          # N = 200, 3 min idle windows
 *   BENCH_QUICK=1 node bench/operator.ts   # N = 50, 1 min idle windows
 */
import { readdirSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { KubeClient } from "../src/operator/kube/client.ts";
import { type ControlPlane, startControlPlane } from "../test/helpers/controlplane.ts";
import { freePort } from "../test/helpers/ports.ts";
import { type ManagedProcess, spawnManaged, waitFor } from "../test/helpers/proc.ts";
import { now, percentile, round, sampleProc, sleep } from "./measure.ts";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const NS = "bench";
const MOUNT = "/data";
const DB = `${MOUNT}/app.db`;
const CR_PATH = `/apis/walship.dev/v1alpha1/namespaces/${NS}/sqlitereplicas`;
const STS_PATH = `/apis/apps/v1/namespaces/${NS}/statefulsets`;
/** Creates in flight at once (a `kubectl apply` of many objects is similar). */
const CREATE_CONCURRENCY = 8;

export interface OperatorBenchOptions {
  /** SqliteReplicas (and StatefulSets) to create. */
  objects: number;
  /** Length of each idle window. */
  idleMs: number;
  /** The walship executable. */
  walship: string;
  /** Run the operator under `node --cpu-prof`, profiles in this directory. */
  profileDir?: string;
  log(msg: string): void;
}

export function operatorParams(quick: boolean): Pick<OperatorBenchOptions, "objects" | "idleMs"> {
  return quick ? { objects: 50, idleMs: 60_000 } : { objects: 200, idleMs: 180_000 };
}

interface Proc {
  cpuSec: number;
  peakRssMiB: number;
}

export interface IdleResult {
  seconds: number;
  /** The operator's own count (walship_operator_kube_requests_total), per minute. */
  requestsPerMin: number;
  /** Per `verb resource`, per minute, busiest first. */
  byRequest: Record<string, number>;
  reconcilesPerMin: number;
  /** Requests per minute to group walship.dev, watches left out: the operator's count ... */
  walshipDevPerMin: number;
  /** ... and the apiserver's (apiserver_request_total), the cross-check. */
  apiserverWalshipDevPerMin: number;
  /** The apiserver's walship.dev requests per `VERB resource/subresource code`, per minute. */
  apiserverWalshipDev: Record<string, number>;
  /** Every request the apiserver served meanwhile (all clients: the controller manager too), per minute. */
  apiserverAllPerMin: number;
  cpuSec: number;
  /** CPU seconds per second of the window, in percent of one core. */
  cpuPercent: number;
  /** Highest VmRSS sampled each second during the window. */
  maxRssMiB: number;
  /** At the end of the window: V8 heap in use and reserved, memory outside the V8 heap (buffers),
   * and open file descriptors (connections included). */
  heapUsedMiB: number;
  heapTotalMiB: number;
  externalMiB: number;
  openFds: number;
}

export interface OperatorResult {
  objects: number;
  operatorFlags: string[];
  create: {
    /** First create sent -> every SqliteReplica reconciled. */
    seconds: number;
    /** First create sent -> last create answered. */
    submitSeconds: number;
    latencyMs: { p50: number; p99: number; max: number };
    kubeRequests: number;
    requestsPerObject: number;
    reconciles: number;
  } & Proc;
  idlePending: IdleResult;
  coldStart: {
    /** Spawn -> /readyz 200 (caches filled). */
    readySec: number;
    /** Spawn -> N reconciles finished. */
    resyncSec: number;
    kubeRequests: number;
  } & Proc;
  ready: {
    /** Pods reported Running -> every SqliteReplica Ready=True. */
    seconds: number;
  };
  idleReady: IdleResult;
  /** Peak RSS (VmHWM) of the operator process over steps 3-4. */
  peakRssMiB: number;
}

// ------------------------------------------------------------------------------------------------
// Prometheus text

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

function parseProm(text: string): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
    if (!m) continue;
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? "").matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g))
      labels[l[1]!] = l[2]!;
    out.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  return out;
}

function sum(
  samples: Sample[],
  name: string,
  pred: (l: Record<string, string>) => boolean = () => true,
): number {
  return samples.filter((s) => s.name === name && pred(s.labels)).reduce((a, s) => a + s.value, 0);
}

const REQ = "walship_operator_kube_requests_total";
const RECONCILES = "walship_operator_reconcile_total";

// ------------------------------------------------------------------------------------------------
// Objects

function statefulSet(name: string): Record<string, unknown> {
  return {
    apiVersion: "apps/v1",
    kind: "StatefulSet",
    metadata: { name, namespace: NS },
    spec: {
      serviceName: name,
      replicas: 0,
      selector: { matchLabels: { app: name } },
      template: {
        metadata: { labels: { app: name } },
        spec: {
          containers: [
            {
              name: "app",
              image: "walship-bench/app:1",
              volumeMounts: [{ name: "data", mountPath: MOUNT }],
            },
          ],
        },
      },
      volumeClaimTemplates: [
        {
          metadata: { name: "data" },
          spec: { accessModes: ["ReadWriteOnce"], resources: { requests: { storage: "1Gi" } } },
        },
      ],
    },
  };
}

function sqliteReplica(name: string, sidecarPort: number): Record<string, unknown> {
  return {
    apiVersion: "walship.dev/v1alpha1",
    kind: "SqliteReplica",
    metadata: { name, namespace: NS },
    spec: {
      statefulSetName: name,
      database: { path: DB, volumeName: "data" },
      destinations: [
        {
          name: "s3",
          s3: {
            bucket: "bench",
            path: name,
            // Never contacted: the operator renders it into the ConfigMap; no sidecar really runs.
            endpoint: "http://127.0.0.1:9",
            region: "us-east-1",
            credentials: {
              accessKeyId: { name: "s3-creds", key: "id" },
              secretAccessKey: { name: "s3-creds", key: "secret" },
            },
          },
        },
      ],
      sidecar: { metricsPort: sidecarPort },
    },
  };
}

/** Runs `fn` over `items`, `n` at a time. */
async function pool<T>(items: T[], n: number, fn: (x: T) => Promise<void>): Promise<void> {
  let i = 0;
  await Promise.all(
    Array.from({ length: n }, async () => {
      while (i < items.length) await fn(items[i++]!);
    }),
  );
}

async function must(cp: ControlPlane, method: string, p: string, body?: unknown): Promise<unknown> {
  const r = await cp.request(method, p, body);
  if (r.status < 200 || r.status >= 300)
    throw new Error(`${method} ${p}: HTTP ${r.status}: ${JSON.stringify(r.body).slice(0, 300)}`);
  return r.body;
}

/**
 * A fake sidecar: the /status document of an idle, healthy replicator (ready, synced, no lag, times
 * that do not move), for every pod. The operator's side of the exchange is real.
 */
async function startFakeSidecar(): Promise<{ server: Server; port: number }> {
  const at = new Date(Date.now() - 60_000).toISOString();
  const gen = "0123456789abcdef";
  const body = JSON.stringify({
    apiVersion: "walship.dev/v1alpha1",
    kind: "ReplicatorStatus",
    version: "bench-fake-sidecar",
    time: at,
    ready: true,
    databases: [
      {
        path: DB,
        ready: true,
        generation: gen,
        position: { generation: gen, index: 1, offset: 4152 },
        pageSize: 4096,
        sizeBytes: 8192,
        walSizeBytes: 4152,
        replicas: [
          {
            name: "s3",
            type: "s3",
            location: "s3://bench",
            ready: true,
            generation: gen,
            position: { generation: gen, index: 1, offset: 4152 },
            lagSeconds: 0,
            pendingTransactions: 0,
            pendingBytes: 0,
            lastSyncAt: at,
            lastSnapshot: { at, index: 0 },
            window: { oldest: at, newest: at },
            syncCount: 1,
            syncErrorCount: 0,
          },
        ],
      },
    ],
  });
  const server = createServer((req, res) => {
    req.resume();
    res.writeHead(200, { "content-type": "application/json" }).end(body);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return { server, port: (server.address() as AddressInfo).port };
}

// ------------------------------------------------------------------------------------------------

interface RunningOp {
  proc: ManagedProcess;
  url: string;
  flags: string[];
  started: number;
}

async function startOp(o: OperatorBenchOptions, cp: ControlPlane, logDir: string): Promise<RunningOp> {
  const port = await freePort();
  // The chart's defaults (workers 2, resync 300 s, poll 10 s, leader election on) are the flags' defaults.
  const flags = [
    "-kubeconfig",
    cp.kubeconfig,
    "-addr",
    `127.0.0.1:${port}`,
    "-leader-election-namespace",
    "walship-system",
    "-image",
    "walship-bench/walship:dev",
    "-log-format",
    "json",
  ];
  const started = now();
  const env = o.profileDir ? { NODE_OPTIONS: `--cpu-prof --cpu-prof-dir=${o.profileDir}` } : {};
  const proc = spawnManaged(o.walship, ["operator", ...flags], { name: "walship-operator", logDir, env });
  return { proc, url: `http://127.0.0.1:${port}`, flags, started };
}

async function scrape(op: RunningOp): Promise<Sample[]> {
  const res = await fetch(`${op.url}/metrics`);
  if (!res.ok) throw new Error(`scrape ${op.url}/metrics: HTTP ${res.status}`);
  return parseProm(await res.text());
}

async function waitReadyz(op: RunningOp): Promise<number> {
  await waitFor(
    async () => {
      const r = await fetch(`${op.url}/readyz`).catch(() => undefined);
      return r?.status === 200;
    },
    { what: "walship operator /readyz", timeoutMs: 60_000, intervalMs: 50, processes: [op.proc] },
  );
  return now();
}

function procNow(op: RunningOp): { cpuSec: number; hwmBytes: number; rssBytes: number } {
  const s = sampleProc(op.proc.pid);
  if (!s) throw new Error(`sample operator (pid ${op.proc.pid}): gone; log ${op.proc.logFile}`);
  return s;
}

async function apiserverMetrics(cp: ControlPlane): Promise<Sample[]> {
  const r = await cp.request<string>("GET", "/metrics");
  if (r.status !== 200) throw new Error(`GET apiserver /metrics: HTTP ${r.status}`);
  return parseProm(String(r.body)).filter((s) => s.name === "apiserver_request_total");
}

/** The apiserver's walship.dev requests between two scrapes, per `VERB resource[/subresource] code`. */
function byKey(a0: Sample[], a1: Sample[], scale: (x: number) => number): Record<string, number> {
  const key = (l: Record<string, string>) =>
    `${l.verb} ${l.resource}${l.subresource ? `/${l.subresource}` : ""} ${l.code}`;
  const out: Record<string, number> = {};
  for (const [sign, list] of [
    [-1, a0],
    [1, a1],
  ] as const) {
    for (const x of list) {
      if (x.labels.group !== "walship.dev") continue;
      const k = key(x.labels);
      out[k] = (out[k] ?? 0) + sign * x.value;
    }
  }
  return Object.fromEntries(
    Object.entries(out)
      .filter(([, v]) => v > 0)
      .map(([k, v]) => [k, scale(v)]),
  );
}

async function idleWindow(cp: ControlPlane, op: RunningOp, ms: number): Promise<IdleResult> {
  // Both scraped at once, so that the two counts cover (nearly) the same window.
  const [m0, a0] = await Promise.all([scrape(op), apiserverMetrics(cp)]);
  const p0 = procNow(op);
  const t0 = now();
  let maxRss = p0.rssBytes;
  while (now() - t0 < ms) {
    await sleep(Math.min(1000, ms - (now() - t0)));
    maxRss = Math.max(maxRss, procNow(op).rssBytes);
    op.proc.assertRunning();
  }
  const [m1, a1] = await Promise.all([scrape(op), apiserverMetrics(cp)]);
  const p1 = procNow(op);
  const minutes = (now() - t0) / 60_000;
  const perMin = (x: number) => round(x / minutes, 1);
  const d = (name: string, pred?: (l: Record<string, string>) => boolean) =>
    sum(m1, name, pred) - sum(m0, name, pred);
  const byRequest: Record<string, number> = {};
  for (const s of m1.filter((x) => x.name === REQ)) {
    const l = s.labels;
    const before = sum(m0, REQ, (x) => x.verb === l.verb && x.resource === l.resource && x.code === l.code);
    if (s.value - before > 0) {
      const k = `${l.verb} ${l.resource}${l.code === "200" || l.code === "201" ? "" : ` (${l.code})`}`;
      byRequest[k] = (byRequest[k] ?? 0) + s.value - before;
    }
  }
  const walshipDev = (l: Record<string, string>) =>
    l.verb !== "watch" && (l.resource ?? "").startsWith("sqlite");
  const apiWalshipDev = (l: Record<string, string>) => l.group === "walship.dev" && l.verb !== "WATCH";
  const apiDelta = (pred: (l: Record<string, string>) => boolean) =>
    sum(a1, "apiserver_request_total", pred) - sum(a0, "apiserver_request_total", pred);
  return {
    seconds: round(minutes * 60, 1),
    requestsPerMin: perMin(d(REQ)),
    byRequest: Object.fromEntries(
      Object.entries(byRequest)
        .sort((a, b) => b[1] - a[1])
        .map(([k, v]) => [k, perMin(v)]),
    ),
    reconcilesPerMin: perMin(d(RECONCILES)),
    walshipDevPerMin: perMin(d(REQ, walshipDev)),
    apiserverWalshipDevPerMin: perMin(apiDelta(apiWalshipDev)),
    apiserverWalshipDev: byKey(a0, a1, perMin),
    apiserverAllPerMin: perMin(apiDelta(() => true)),
    cpuSec: round(p1.cpuSec - p0.cpuSec, 2),
    cpuPercent: round(((p1.cpuSec - p0.cpuSec) / (minutes * 60)) * 100, 1),
    maxRssMiB: round(maxRss / 2 ** 20),
    heapUsedMiB: round(sum(m1, "nodejs_heap_size_used_bytes") / 2 ** 20),
    heapTotalMiB: round(sum(m1, "nodejs_heap_size_total_bytes") / 2 ** 20),
    externalMiB: round(sum(m1, "nodejs_external_memory_bytes") / 2 ** 20),
    openFds: readdirSync(`/proc/${op.proc.pid}/fd`).length,
  };
}

interface CrLite {
  metadata?: { name?: string; generation?: number; resourceVersion?: string };
  status?: {
    observedGeneration?: number;
    conditions?: Array<{ type: string; status: string }>;
  };
}

const isTrue = (c: CrLite, type: string) =>
  c.status?.conditions?.some((x) => x.type === type && x.status === "True");
const reconciled = (c: CrLite) =>
  c.status?.observedGeneration !== undefined &&
  c.status.observedGeneration === c.metadata?.generation &&
  isTrue(c, "Injected") === true;

/**
 * Watches the SqliteReplicas from `rv` and records, per name, the first time `pred` held; resolves
 * when all `names` have, or rejects after `timeoutMs`.
 */
async function watchUntil(
  client: KubeClient,
  rv: string,
  names: Set<string>,
  pred: (c: CrLite) => boolean,
  timeoutMs: number,
): Promise<Map<string, number>> {
  const seen = new Map<string, number>();
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), timeoutMs);
  let last = rv;
  try {
    while (seen.size < names.size) {
      try {
        for await (const ev of client.watch<CrLite>(
          CR_PATH,
          { resourceVersion: last, allowWatchBookmarks: true, timeoutSeconds: 60 },
          abort.signal,
        )) {
          last = ev.object.metadata?.resourceVersion ?? last;
          const name = ev.object.metadata?.name ?? "";
          if (ev.type === "ERROR") throw new Error(`watch ${CR_PATH}: ${JSON.stringify(ev.object)}`);
          if (names.has(name) && !seen.has(name) && pred(ev.object)) seen.set(name, now());
          if (seen.size === names.size) break;
        }
      } catch (err) {
        if (abort.signal.aborted) {
          throw new Error(`watch ${CR_PATH}: ${seen.size}/${names.size} within ${timeoutMs} ms`);
        }
        throw err;
      }
    }
    return seen;
  } finally {
    clearTimeout(timer);
    abort.abort();
  }
}

async function listRv(cp: ControlPlane, p: string): Promise<string> {
  const list = (await must(cp, "GET", p)) as { metadata: { resourceVersion: string } };
  return list.metadata.resourceVersion;
}

async function setUp(cp: ControlPlane): Promise<void> {
  await cp.kubectl(["apply", "-f", path.join(ROOT, "crds")]);
  await cp.kubectl(["wait", "--for=condition=Established", "crd/sqlitereplicas.walship.dev"]);
  await cp.kubectl(["wait", "--for=condition=Established", "crd/sqliterestores.walship.dev"]);
  await cp.kubectl(["create", "namespace", "walship-system"]);
  await cp.kubectl(["create", "namespace", NS]);
  await cp.kubectl(
    ["-n", NS, "create", "secret", "generic", "s3-creds"].concat([
      "--from-literal=id=bench",
      "--from-literal=secret=bench-secret",
    ]),
  );
  // Pods need the namespace's default ServiceAccount (admission).
  await waitFor(
    async () => (await cp.request("GET", `/api/v1/namespaces/${NS}/serviceaccounts/default`)).status === 200,
    { what: `ServiceAccount ${NS}/default`, timeoutMs: 60_000 },
  );
}

/** The kubelet's part, for one pod: Running, the restore container done, the sidecar and the app up. */
function runningStatus(startedAt: string): Record<string, unknown> {
  const running = { running: { startedAt } };
  const image = "walship-bench/walship:dev";
  return {
    status: {
      phase: "Running",
      hostIP: "127.0.0.1",
      podIP: "127.0.0.1",
      podIPs: [{ ip: "127.0.0.1" }],
      startTime: startedAt,
      conditions: [
        { type: "Initialized", status: "True", lastTransitionTime: startedAt },
        { type: "Ready", status: "True", lastTransitionTime: startedAt },
        { type: "ContainersReady", status: "True", lastTransitionTime: startedAt },
      ],
      initContainerStatuses: [
        {
          name: "walship-restore",
          image,
          imageID: "",
          ready: true,
          restartCount: 0,
          state: { terminated: { exitCode: 0, reason: "Completed", startedAt, finishedAt: startedAt } },
        },
        { name: "walship", image, imageID: "", ready: true, started: true, restartCount: 0, state: running },
      ],
      containerStatuses: [
        {
          name: "app",
          image: "walship-bench/app:1",
          imageID: "",
          ready: true,
          started: true,
          restartCount: 0,
          state: running,
        },
      ],
    },
  };
}

export async function operatorBench(o: OperatorBenchOptions): Promise<OperatorResult> {
  const n = o.objects;
  const names = Array.from({ length: n }, (_, i) => `db-${String(i).padStart(4, "0")}`);
  const nameSet = new Set(names);
  o.log(`  operator: starting the control plane (etcd, kube-apiserver, kube-controller-manager)`);
  const cp = await startControlPlane();
  const sidecar = await startFakeSidecar();
  const client = KubeClient.load(cp.kubeconfig);
  const logDir = path.join(cp.dir, "logs");
  let op: RunningOp | undefined;
  try {
    await setUp(cp);
    for (const name of names) await must(cp, "POST", STS_PATH, statefulSet(name));
    op = await startOp(o, cp, logDir);
    await waitReadyz(op);
    await sleep(2000);

    // 1. N SqliteReplicas, from the first create to all reconciled.
    o.log(`  operator: creating ${n} SqliteReplicas`);
    const m0 = await scrape(op);
    const p0 = procNow(op);
    const rv = await listRv(cp, CR_PATH);
    const created = new Map<string, number>();
    const t0 = now();
    const watching = watchUntil(client, rv, nameSet, reconciled, 600_000);
    watching.catch(() => undefined);
    await pool(names, CREATE_CONCURRENCY, async (name) => {
      await must(cp, "POST", CR_PATH, sqliteReplica(name, sidecar.port));
      created.set(name, now());
    });
    const submitted = now();
    const done = await watching;
    const t1 = Math.max(...done.values());
    await sleep(500);
    const m1 = await scrape(op);
    const p1 = procNow(op);
    const lat = names.map((x) => done.get(x)! - created.get(x)!).sort((a, b) => a - b);
    const kubeRequests = sum(m1, REQ) - sum(m0, REQ);
    const create = {
      seconds: round((t1 - t0) / 1000, 2),
      submitSeconds: round((submitted - t0) / 1000, 2),
      latencyMs: {
        p50: round(percentile(lat, 50)),
        p99: round(percentile(lat, 99)),
        max: round(lat.at(-1) ?? Number.NaN),
      },
      kubeRequests,
      requestsPerObject: round(kubeRequests / n, 1),
      reconciles: sum(m1, RECONCILES) - sum(m0, RECONCILES),
      cpuSec: round(p1.cpuSec - p0.cpuSec, 2),
      peakRssMiB: round(p1.hwmBytes / 2 ** 20),
    };
    o.log(
      `  operator: ${n} reconciled in ${create.seconds} s (p50 ${create.latencyMs.p50} ms, p99 ${create.latencyMs.p99} ms), ${kubeRequests} API requests, ${create.cpuSec} CPU s, peak RSS ${create.peakRssMiB} MiB`,
    );

    // 2. Idle, no pods.
    o.log(`  operator: idle ${o.idleMs / 1000} s with no pods`);
    const idlePending = await idleWindow(cp, op, o.idleMs);
    o.log(
      `  operator: idle, no pods: ${idlePending.requestsPerMin} API requests/min (apiserver saw ${idlePending.apiserverWalshipDevPerMin}/min for walship.dev vs ${idlePending.walshipDevPerMin} counted), ${idlePending.cpuPercent} % CPU`,
    );

    // 3. Cold start with N present.
    const stopped = await op.proc.stop({ signal: "SIGTERM", graceMs: 30_000 });
    if (stopped.code !== 0) o.log(`  operator exited ${JSON.stringify(stopped)}; log ${op.proc.logFile}`);
    await sleep(2000);
    o.log(`  operator: cold start with ${n} SqliteReplicas present`);
    op = await startOp(o, cp, logDir);
    const readyAt = await waitReadyz(op);
    const cold = op;
    const resyncAt = await waitFor(
      async () => {
        const m = await scrape(cold).catch(() => undefined);
        return m && sum(m, RECONCILES) >= n ? now() : undefined;
      },
      {
        what: `${n} reconciles after a cold start`,
        timeoutMs: 600_000,
        intervalMs: 100,
        processes: [op.proc],
      },
    );
    const pc = procNow(op);
    const coldStart = {
      readySec: round((readyAt - op.started) / 1000, 2),
      resyncSec: round((resyncAt - op.started) / 1000, 2),
      kubeRequests: sum(await scrape(op), REQ),
      cpuSec: round(pc.cpuSec, 2),
      peakRssMiB: round(pc.hwmBytes / 2 ** 20),
    };
    o.log(
      `  operator: cold start: ready in ${coldStart.readySec} s, ${n} reconciles in ${coldStart.resyncSec} s, ${coldStart.cpuSec} CPU s`,
    );

    // 4. Pods running with a healthy sidecar: the settled state.
    o.log(`  operator: scaling ${n} StatefulSets to 1 and reporting the pods Running`);
    await pool(names, CREATE_CONCURRENCY, async (name) => {
      await must(cp, "PATCH", `${STS_PATH}/${name}/scale`, { spec: { replicas: 1 } });
    });
    const podPath = (name: string) => `/api/v1/namespaces/${NS}/pods/${name}-0`;
    await waitFor(
      async () => {
        const r = await cp.request<{ items: unknown[] }>("GET", `/api/v1/namespaces/${NS}/pods`);
        return r.status === 200 && r.body.items.length >= n;
      },
      { what: `${n} pods created by the StatefulSet controller`, timeoutMs: 300_000, intervalMs: 500 },
    );
    const startedAt = new Date(Date.now() - 60_000).toISOString().replace(/\.\d{3}Z$/, "Z");
    const crRv = await listRv(cp, CR_PATH);
    const readyT0 = now();
    const readyWatch = watchUntil(client, crRv, nameSet, (c) => isTrue(c, "Ready") === true, 600_000);
    readyWatch.catch(() => undefined);
    await pool(names, CREATE_CONCURRENCY, async (name) => {
      await must(cp, "PATCH", `${podPath(name)}/status`, runningStatus(startedAt));
    });
    const readyDone = await readyWatch;
    const ready = { seconds: round((Math.max(...readyDone.values()) - readyT0) / 1000, 2) };
    o.log(`  operator: all ${n} Ready ${ready.seconds} s after the pods were reported Running`);
    await sleep(5000);
    o.log(`  operator: idle ${o.idleMs / 1000} s with ${n} Ready SqliteReplicas`);
    const idleReady = await idleWindow(cp, op, o.idleMs);
    o.log(
      `  operator: idle, all Ready: ${idleReady.requestsPerMin} API requests/min (apiserver saw ${idleReady.apiserverWalshipDevPerMin}/min for walship.dev vs ${idleReady.walshipDevPerMin} counted), ${idleReady.cpuPercent} % CPU`,
    );
    const peak = round(procNow(op).hwmBytes / 2 ** 20);
    return {
      objects: n,
      operatorFlags: op.flags.filter((f) => !f.includes(cp.dir)),
      create,
      idlePending,
      coldStart,
      ready,
      idleReady,
      peakRssMiB: peak,
    };
  } catch (err) {
    if (op) o.log(`  operator log tail:\n${op.proc.logTail(20)}`);
    throw err;
  } finally {
    await op?.proc.stop({ signal: "SIGTERM", graceMs: 15_000 });
    await new Promise<void>((r) => sidecar.server.close(() => r()));
    await cp.stop();
  }
}

/** Table rows: figure and value (walship only). */
export function operatorRows(r: OperatorResult): Array<[string, number]> {
  const n = r.objects;
  return [
    [`operator: reconcile ${n} new SqliteReplicas, s`, r.create.seconds],
    ["operator: create -> reconciled p50 ms", r.create.latencyMs.p50],
    ["operator: create -> reconciled p99 ms", r.create.latencyMs.p99],
    ["operator: API requests per new SqliteReplica", r.create.requestsPerObject],
    [`operator: CPU s for ${n} new`, r.create.cpuSec],
    [`operator: cold start to ${n} reconciled, s`, r.coldStart.resyncSec],
    ["operator: steady API requests/min, no pods", r.idlePending.requestsPerMin],
    ["operator: steady API requests/min, all Ready", r.idleReady.requestsPerMin],
    ["operator: steady CPU %, no pods", r.idlePending.cpuPercent],
    ["operator: steady CPU %, all Ready", r.idleReady.cpuPercent],
    ["operator: peak RSS MiB", r.peakRssMiB],
  ];
}

if (import.meta.main) {
  const quick = process.env.BENCH_QUICK === "1";
  const log = (msg: string) => console.log(`[${new Date().toISOString().slice(11, 19)}] ${msg}`);
  try {
    const r = await operatorBench({
      ...operatorParams(quick),
      walship: process.env.BENCH_WALSHIP ?? path.join(ROOT, "bin/walship"),
      log,
    });
    console.log(JSON.stringify(r, null, 2));
    for (const [k, v] of operatorRows(r)) console.log(`${k}: ${v}`);
    process.exit(0);
  } catch (err) {
    console.error(`bench operator: ${(err as Error).stack ?? err}`);
    process.exit(1);
  }
}
