/**
 * Several databases per SqliteReplica on the real node: an app pod whose two SQLite files live on two
 * claims (the app writes one, a second writer container the other), one SqliteReplica listing both
 * in spec.databases. Each database is replicated under its own path in MinIO and reported per
 * database on the status; both are restored before the app starts when the pod's volumes are wiped;
 * `kubectl walship restore --database` restores the one it names into a new claim (and refuses to
 * guess which one without it); a SqliteRestore that names none fails with the field.
 */
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { after, before, describe, it } from "node:test";
import { ListObjectsV2Command } from "@aws-sdk/client-s3";
import Database from "better-sqlite3";
import { binPath } from "../helpers/cache.ts";
import {
  createS3Secret,
  installOperator,
  type PodLite,
  podGone,
  RESTRICTED,
  ROOT,
  type Row,
  readyPod,
  rows,
  s3SqliteReplica,
} from "../helpers/e2e.ts";
import { type Minio, startMinio } from "../helpers/minio.ts";
import { type Cluster, IMAGES, startCluster } from "../helpers/node/index.ts";
import { type RunResult, runCommand, waitFor } from "../helpers/proc.ts";

const NS = "e2e-databases";
const BUCKET = "databases";
const PREFIX = "multi";
/** The two databases: the app's own, and the second writer's on another claim. */
const DATABASES = [
  { name: "main", path: "/data/app.db", volumeName: "data" },
  { name: "events", path: "/events/app.db", volumeName: "events" },
];

/** The app (port 8080, /data) and a second writer of the same image (port 8081, /events). */
function twoDatabaseApp(): Record<string, unknown> {
  const writer = (name: string, dir: string, port: number, mounts: object[]) => ({
    name,
    image: IMAGES.app,
    imagePullPolicy: "IfNotPresent",
    args: ["serve"],
    env: [
      { name: "DATA_DIR", value: dir },
      { name: "PORT", value: String(port) },
    ],
    ports: [{ containerPort: port }],
    volumeMounts: mounts,
    readinessProbe: { httpGet: { path: "/ready", port }, periodSeconds: 1 },
    securityContext: RESTRICTED,
  });
  return {
    apiVersion: "apps/v1",
    kind: "StatefulSet",
    metadata: { name: "app", namespace: NS },
    spec: {
      serviceName: "app",
      replicas: 1,
      selector: { matchLabels: { app: "app" } },
      template: {
        metadata: { labels: { app: "app" } },
        spec: {
          terminationGracePeriodSeconds: 10,
          containers: [
            writer("app", "/data", 8080, [
              { name: "data", mountPath: "/data" },
              { name: "events", mountPath: "/events" },
            ]),
            writer("events", "/events", 8081, [{ name: "events", mountPath: "/events" }]),
          ],
        },
      },
      volumeClaimTemplates: ["data", "events"].map((name) => ({
        metadata: { name },
        spec: { accessModes: ["ReadWriteOnce"], resources: { requests: { storage: "1Gi" } } },
      })),
    },
  };
}

interface ReplicaCr {
  status?: {
    phase?: string;
    lagSeconds?: number;
    conditions?: Array<{ type: string; status: string }>;
    databases?: Array<{ name: string; generation?: string; lagSeconds?: number; windowNewest?: string }>;
    pods?: Array<{ name: string; ready: boolean; databases?: Array<{ name: string; ready?: boolean }> }>;
  };
}

describe("several databases in one SqliteReplica (real node, MinIO)", { timeout: 1_200_000 }, () => {
  let c: Cluster;
  let minio: Minio;

  const plugin = (args: string[]): Promise<RunResult> =>
    runCommand(binPath("kubectl"), ["walship", ...args, "-n", NS], {
      env: { KUBECONFIG: c.cp.kubeconfig, PATH: `${path.join(ROOT, "bin")}:${process.env.PATH}` },
      allowFailure: true,
      timeoutMs: 600_000,
    });
  const cr = async () =>
    (await c.cp.request<ReplicaCr>("GET", `/apis/walship.dev/v1alpha1/namespaces/${NS}/sqlitereplicas/db`))
      .body;
  const eventRows = async (p: PodLite): Promise<Row[]> =>
    (await (await fetch(`http://${p.status?.podIP}:8081/rows`)).json()) as Row[];
  /** Ready, every database with a generation and lag 0 over the pods. */
  const caughtUp = () =>
    waitFor(
      async () => {
        const s = (await cr()).status;
        const ready = s?.conditions?.some((x) => x.type === "Ready" && x.status === "True");
        const dbs = s?.databases ?? [];
        return ready && dbs.length === 2 && dbs.every((d) => d.generation && d.lagSeconds === 0)
          ? s
          : undefined;
      },
      { what: "SqliteReplica db Ready, both databases at lag 0", timeoutMs: 180_000, intervalMs: 500 },
    ).catch(async (err) => {
      throw new Error(
        `${(err as Error).message}: ${JSON.stringify((await cr()).status)}\n${await c.describe(NS)}`,
      );
    });

  before(async () => {
    c = await startCluster();
    minio = await startMinio({ host: c.gateway });
    await minio.createBucket(BUCKET);
    await installOperator(c);
    await c.createNamespace(NS, "restricted");
    await createS3Secret(c, NS, minio);
  });
  after(async () => {
    await minio?.close();
    await c?.stop();
  });

  let first: PodLite;

  it("replicates each database under its own path and reports each on the status", async () => {
    await c.apply(twoDatabaseApp());
    const spec = s3SqliteReplica(NS, "db", minio, { mount: "/data", bucket: BUCKET, prefix: PREFIX }) as {
      spec: Record<string, unknown>;
    };
    delete spec.spec.database;
    spec.spec.databases = DATABASES;
    spec.spec.appContainer = "app";
    await c.apply(spec);
    first = await readyPod(c, NS, "app-0", (x) =>
      (x.spec.initContainers ?? []).some((i) => i.name === "walship"),
    );
    const restore = first.spec.initContainers?.find((i) => i.name === "walship-restore");
    assert.deepEqual(restore?.command?.slice(-2), ["/data/app.db", "/events/app.db"]);
    const s = await caughtUp();
    assert.deepEqual(
      s.databases?.map((d) => d.name),
      ["main", "events"],
    );
    assert.notEqual(
      s.databases?.[0]?.generation,
      s.databases?.[1]?.generation,
      "two databases, two generations",
    );
    const pod = s.pods?.find((p) => p.name === "app-0");
    assert.deepEqual(
      pod?.databases?.map((d) => [d.name, d.ready]),
      [
        ["main", true],
        ["events", true],
      ],
    );
    for (const d of DATABASES) {
      const listed = await minio
        .client()
        .send(new ListObjectsV2Command({ Bucket: BUCKET, Prefix: `${PREFIX}/app-0/${d.name}/generations/` }));
      assert.ok((listed.KeyCount ?? 0) > 0, `objects under ${PREFIX}/app-0/${d.name}/generations/`);
    }
    const status = await plugin(["status", "db", "-o", "json"]);
    assert.equal(status.code, 0, status.stderr);
    const report = JSON.parse(status.stdout) as {
      databases?: Array<{ name: string; path: string }>;
      pods: Array<{ destinations: Array<{ database?: string; name: string }> }>;
    };
    assert.deepEqual(
      report.databases?.map((d) => `${d.name}=${d.path}`),
      ["main=/data/app.db", "events=/events/app.db"],
    );
    assert.deepEqual(
      report.pods[0]?.destinations.map((d) => `${d.database}/${d.name}`),
      ["main/minio", "events/minio"],
    );
  });

  it("restores both databases before the app starts when the pod's volumes are wiped", async () => {
    const main0 = await rows(first);
    const events0 = await eventRows(first);
    await caughtUp();
    await new Promise((r) => setTimeout(r, 1500));
    const dirs = [await c.pvcDir(NS, "data-app-0"), await c.pvcDir(NS, "events-app-0")];
    await c.kubectl(["-n", NS, "scale", "statefulset", "app", "--replicas=0"]);
    await podGone(c, NS, "app-0");
    for (const dir of dirs)
      for (const f of fs.readdirSync(dir)) fs.rmSync(path.join(dir, f), { recursive: true, force: true });
    await c.kubectl(["-n", NS, "scale", "statefulset", "app", "--replicas=1"]);
    const p = await readyPod(c, NS, "app-0", (x) => x.metadata.uid !== first.metadata.uid);
    const main1 = await rows(p);
    const events1 = await eventRows(p);
    assert.deepEqual(main1.slice(0, main0.length), main0, "every synced row of main is back");
    assert.equal(main1.length, main0.length + 1, "plus the row of this start");
    assert.deepEqual(events1.slice(0, events0.length), events0, "every synced row of events is back");
    assert.equal(events1.length, events0.length + 1, "plus the row of this start");
    first = p;
  });

  it("kubectl walship restore --database restores the one it names; without it, it refuses", async () => {
    await caughtUp();
    await new Promise((r) => setTimeout(r, 1500));
    const want = await eventRows(first);
    const unnamed = await plugin(["restore", "db", "--to", "latest", "--new-claim", "copy"]);
    assert.equal(unnamed.code, 2, unnamed.stderr);
    assert.match(
      unnamed.stderr,
      /--database: SqliteReplica db lists several databases \(main, events\); name one/,
    );
    const r = await plugin([
      "restore",
      "db",
      "--to",
      "latest",
      "--new-claim",
      "events-copy",
      "--database",
      "events",
      "--name",
      "events-copy",
      "--wait",
    ]);
    assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}\n${await c.describe(NS)}`);
    const copy = new Database(path.join(await c.pvcDir(NS, "events-copy"), "app.db"), { readonly: true });
    try {
      assert.deepEqual(copy.prepare("SELECT id, pod, at FROM starts ORDER BY id").all(), want);
    } finally {
      copy.close();
    }
  });

  it("a SqliteRestore that names no database fails with the field and the names", async () => {
    await c.apply({
      apiVersion: "walship.dev/v1alpha1",
      kind: "SqliteRestore",
      metadata: { name: "unnamed", namespace: NS },
      spec: { sqliteReplicaName: "db", mode: "NewClaim", newClaim: { name: "x" } },
    });
    const done = await waitFor(
      async () => {
        const r = await c.cp.request<{ status?: { phase?: string; message?: string } }>(
          "GET",
          `/apis/walship.dev/v1alpha1/namespaces/${NS}/sqliterestores/unnamed`,
        );
        return r.body.status?.phase === "Failed" || r.body.status?.phase === "Succeeded" ? r.body : undefined;
      },
      { what: "SqliteRestore unnamed finished", timeoutMs: 60_000, intervalMs: 250 },
    );
    assert.equal(done.status?.phase, "Failed");
    assert.equal(
      done.status?.message,
      "spec.database: SqliteReplica db lists several databases (main, events); name one of them",
    );
  });
});
