/**
 * What the end-to-end suites share on the real node (test/helpers/node): the test app as a StatefulSet,
 * the sample SqliteReplica, the credentials Secret, and the operator installed by `helm install` of
 * charts/walship into `walship-system` (Pod Security `restricted`), as a user installs it.
 */
import * as path from "node:path";
import Database from "better-sqlite3";
import { helm } from "./helm.ts";
import type { Minio } from "./minio.ts";
import { type Cluster, IMAGES } from "./node/index.ts";
import { waitFor } from "./proc.ts";

export const ROOT = path.resolve(import.meta.dirname, "../..");
export const CHART = path.join(ROOT, "charts/walship");
export const OPERATOR_NS = "walship-system";

/** The restricted container securityContext (Pod Security Standards `restricted`). */
export const RESTRICTED = {
  allowPrivilegeEscalation: false,
  capabilities: { drop: ["ALL"] },
  runAsNonRoot: true,
  seccompProfile: { type: "RuntimeDefault" },
};

export interface AppUser {
  /** Pod-level runAsUser/runAsGroup/fsGroup; omitted: the image's user (uid 1000). */
  runAsUser?: number;
  runAsGroup?: number;
  fsGroup?: number;
}

/**
 * The test app as a StatefulSet: one pod of the `walship-test/app:1` image serving its SQLite database
 * from a volumeClaimTemplate named `data` (the default StorageClass) mounted at `mount`, ready once it
 * serves /ready. Restricted unless it runs as root.
 */
export function appStatefulSet(
  namespace: string,
  mount: string,
  opts: { name?: string; user?: AppUser; replicas?: number } = {},
): Record<string, unknown> {
  const name = opts.name ?? "app";
  const root = opts.user?.runAsUser === 0;
  return {
    apiVersion: "apps/v1",
    kind: "StatefulSet",
    metadata: { name, namespace },
    spec: {
      serviceName: name,
      replicas: opts.replicas ?? 1,
      selector: { matchLabels: { app: name } },
      template: {
        metadata: { labels: { app: name } },
        spec: {
          terminationGracePeriodSeconds: 10,
          ...(opts.user ? { securityContext: opts.user } : {}),
          containers: [
            {
              name: "app",
              image: IMAGES.app,
              imagePullPolicy: "IfNotPresent",
              args: ["serve"],
              env: [{ name: "DATA_DIR", value: mount }],
              ports: [{ name: "http", containerPort: 8080 }],
              volumeMounts: [{ name: "data", mountPath: mount }],
              readinessProbe: { httpGet: { path: "/ready", port: 8080 }, periodSeconds: 1 },
              securityContext: root ? { allowPrivilegeEscalation: false, runAsNonRoot: false } : RESTRICTED,
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

/**
 * The test app as a Deployment (appStatefulSet's pod template) and the claim `data-<name>` (1Gi, the
 * default StorageClass) its volume `data` is on: one replica and the Recreate strategy unless `opts`
 * say otherwise. `volume` replaces the claim-backed volume (an emptyDir, a claim that does not exist).
 */
export function appDeployment(
  namespace: string,
  mount: string,
  opts: {
    name?: string;
    replicas?: number;
    strategy?: "Recreate" | "RollingUpdate";
    volume?: Record<string, unknown>;
  } = {},
): Record<string, unknown>[] {
  const name = opts.name ?? "web";
  const sts = appStatefulSet(namespace, mount, { name }) as {
    spec: { selector: unknown; template: { spec: Record<string, unknown> } };
  };
  const template = structuredClone(sts.spec.template);
  template.spec.volumes = [
    opts.volume ?? { name: "data", persistentVolumeClaim: { claimName: `data-${name}` } },
  ];
  return [
    {
      apiVersion: "v1",
      kind: "PersistentVolumeClaim",
      metadata: { name: `data-${name}`, namespace },
      spec: { accessModes: ["ReadWriteOnce"], resources: { requests: { storage: "1Gi" } } },
    },
    {
      apiVersion: "apps/v1",
      kind: "Deployment",
      metadata: { name, namespace },
      spec: {
        replicas: opts.replicas ?? 1,
        strategy: { type: opts.strategy ?? "Recreate" },
        selector: sts.spec.selector,
        template,
      },
    },
  ];
}

/** The Secret `s3-creds` (keys `id`, `secret`) holding MinIO's credentials. */
export async function createS3Secret(c: Cluster, ns: string, minio: Minio, name = "s3-creds"): Promise<void> {
  await c.kubectl([
    "-n",
    ns,
    "create",
    "secret",
    "generic",
    name,
    `--from-literal=id=${minio.accessKeyId}`,
    `--from-literal=secret=${minio.secretAccessKey}`,
  ]);
}

/** A SqliteReplica of the app's database replicating to MinIO, with `over` merged into its spec. */
export function s3SqliteReplica(
  namespace: string,
  name: string,
  minio: Minio,
  opts: { mount: string; bucket: string; prefix?: string; statefulSet?: string },
  over: Record<string, unknown> = {},
): Record<string, unknown> {
  return {
    apiVersion: "walship.dev/v1alpha1",
    kind: "SqliteReplica",
    metadata: { name, namespace },
    spec: {
      statefulSetName: opts.statefulSet ?? "app",
      database: { path: `${opts.mount}/app.db`, volumeName: "data" },
      destinations: [
        {
          name: "minio",
          s3: {
            bucket: opts.bucket,
            path: opts.prefix ?? "app",
            endpoint: minio.endpoint,
            region: minio.region,
            forcePathStyle: true,
            credentials: {
              accessKeyId: { name: "s3-creds", key: "id" },
              secretAccessKey: { name: "s3-creds", key: "secret" },
            },
          },
        },
      ],
      syncInterval: "200ms",
      ...over,
    },
  };
}

export interface Condition {
  type: string;
  status: string;
  reason: string;
  message: string;
}

export interface PodLite {
  metadata: {
    name: string;
    uid: string;
    annotations?: Record<string, string>;
    labels?: Record<string, string>;
    deletionTimestamp?: string;
  };
  spec: {
    initContainers?: Array<{
      name: string;
      command?: string[];
      securityContext?: { runAsUser?: number; runAsGroup?: number; [k: string]: unknown };
      ports?: Array<{ name?: string; containerPort: number }>;
    }>;
    containers?: Array<{ name: string; securityContext?: Record<string, unknown> }>;
    securityContext?: { runAsUser?: number; runAsGroup?: number; fsGroup?: number };
  };
  status?: {
    phase?: string;
    podIP?: string;
    conditions?: Array<{ type: string; status: string }>;
    initContainerStatuses?: Array<{
      name: string;
      containerID?: string;
      restartCount: number;
      ready: boolean;
    }>;
    containerStatuses?: Array<{
      name: string;
      containerID?: string;
      restartCount: number;
      ready: boolean;
      state?: { terminated?: { exitCode: number; message?: string; reason?: string } };
    }>;
  };
}

export async function getPod(c: Cluster, ns: string, name: string): Promise<PodLite | undefined> {
  const r = await c.cp.request<PodLite>("GET", `/api/v1/namespaces/${ns}/pods/${name}`);
  return r.status === 200 ? r.body : undefined;
}

/** Waits for a pod Running and Ready (and `pred`); the failure message describes the namespace. */
export function readyPod(
  c: Cluster,
  ns: string,
  name: string,
  pred: (p: PodLite) => boolean = () => true,
  timeoutMs = 180_000,
): Promise<PodLite> {
  return waitFor(
    async () => {
      const p = await getPod(c, ns, name);
      return p &&
        !p.metadata.deletionTimestamp &&
        p.status?.phase === "Running" &&
        p.status.conditions?.some((x) => x.type === "Ready" && x.status === "True") &&
        pred(p)
        ? p
        : undefined;
    },
    { what: `pod ${ns}/${name} Running and Ready`, timeoutMs, intervalMs: 250 },
  ).catch(async (err) => {
    throw new Error(`${(err as Error).message}\n${await c.describe(ns)}`);
  });
}

/** Waits until a pod is gone, or replaced by one with another uid. */
export function podGone(c: Cluster, ns: string, name: string, uid?: string): Promise<true> {
  return waitFor(
    async () => {
      const p = await getPod(c, ns, name);
      return !p || (uid !== undefined && p.metadata.uid !== uid) ? true : undefined;
    },
    { what: `pod ${ns}/${name} gone`, timeoutMs: 120_000, intervalMs: 250 },
  );
}

export interface Row {
  id: number;
  pod: string;
  at: string;
}

/** The app's rows, from its HTTP API at the pod's IP (host -> pod over the bridge). */
export async function rows(p: PodLite): Promise<Row[]> {
  const res = await fetch(`http://${p.status?.podIP}:8080/rows`);
  return (await res.json()) as Row[];
}

/** Inserts one row with its time straight into the app's database file (the app keeps it open too). */
export function insertRow(dbFile: string, label: string): Row {
  const db = new Database(dbFile);
  try {
    const at = new Date().toISOString();
    const r = db.prepare("INSERT INTO starts (pod, at) VALUES (?, ?)").run(label, at);
    return { id: Number(r.lastInsertRowid), pod: label, at };
  } finally {
    db.close();
  }
}

export interface Operator {
  /** The Ready operator pod's name (the current one). */
  podName(): Promise<string>;
  /** http://<pod IP>:<metrics port>, the operator's /metrics, /healthz and /readyz. */
  url(): Promise<string>;
  /** Scales the operator to 0 and waits until its pods are gone. */
  stop(): Promise<void>;
  /** Scales it back to 1 and waits until it is Ready. */
  start(): Promise<void>;
  logs(): Promise<string>;
}

/**
 * The CRDs, the walship-system namespace (restricted) and `helm install` of charts/walship with the
 * test image; resolves when the operator's pod is Ready.
 */
export async function installOperator(c: Cluster, values: readonly string[] = []): Promise<Operator> {
  await c.kubectl(["apply", "-f", path.join(ROOT, "crds")]);
  await c.kubectl(["wait", "--for=condition=Established", "crd", "--all", "--timeout=60s"]);
  await c.createNamespace(OPERATOR_NS);
  await helm([
    "--kubeconfig",
    c.cp.kubeconfig,
    "install",
    "walship",
    CHART,
    "-n",
    OPERATOR_NS,
    "--skip-crds",
    "--set",
    `image.repository=${IMAGES.walship.split(":")[0]},image.tag=${IMAGES.walship.split(":")[1]}`,
    "--set",
    "operator.poll=2,operator.resync=30,operator.logFormat=text",
    ...values.flatMap((v) => ["--set", v]),
  ]);
  const readyOperatorPod = () =>
    waitFor(
      async () => {
        const pods = await c.cp.request<{ items: PodLite[] }>(
          "GET",
          `/api/v1/namespaces/${OPERATOR_NS}/pods?labelSelector=app.kubernetes.io%2Fname%3Dwalship`,
        );
        return pods.body.items.find(
          (p) =>
            !p.metadata.deletionTimestamp &&
            p.status?.conditions?.some((x) => x.type === "Ready" && x.status === "True"),
        );
      },
      { what: "the operator's pod Ready", timeoutMs: 120_000, intervalMs: 250 },
    ).catch(async (err) => {
      throw new Error(`${(err as Error).message}\n${await c.describe(OPERATOR_NS)}`);
    });
  await readyOperatorPod();
  const op: Operator = {
    async podName() {
      return (await readyOperatorPod()).metadata.name;
    },
    async url() {
      const p = await readyOperatorPod();
      return `http://${p.status?.podIP}:8080`;
    },
    async stop() {
      await c.kubectl(["-n", OPERATOR_NS, "scale", "deployment/walship", "--replicas=0"]);
      await waitFor(
        async () => {
          const pods = await c.cp.request<{ items: unknown[] }>(
            "GET",
            `/api/v1/namespaces/${OPERATOR_NS}/pods?labelSelector=app.kubernetes.io%2Fname%3Dwalship`,
          );
          return pods.body.items.length === 0 ? true : undefined;
        },
        { what: "the operator's pods gone", timeoutMs: 60_000, intervalMs: 100 },
      );
    },
    async start() {
      await c.kubectl(["-n", OPERATOR_NS, "scale", "deployment/walship", "--replicas=1"]);
      await readyOperatorPod();
    },
    async logs() {
      return c.logs(OPERATOR_NS, await op.podName(), "operator");
    },
  };
  return op;
}
