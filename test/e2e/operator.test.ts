/**
 * walship operator end to end on the real node (test/helpers/node: kubelet, containerd, runc, the
 * image built from the Dockerfile) with MinIO on the node's bridge. The operator is installed by
 * `helm install` of charts/walship and runs as a pod with only the chart's RBAC; the test namespace
 * enforces Pod Security `restricted`.
 */
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { after, before, describe, it } from "node:test";
import { ListObjectsV2Command } from "@aws-sdk/client-s3";
import Database from "better-sqlite3";
import { stringify } from "yaml";
import { KubeClient } from "../../src/operator/kube/client.ts";
import {
  appStatefulSet,
  createS3Secret,
  installOperator,
  OPERATOR_NS,
  type Operator,
  type PodLite,
  RESTRICTED,
  readyPod as readyPodIn,
  rows,
  s3SqliteReplica,
} from "../helpers/e2e.ts";
import { type Minio, startMinio } from "../helpers/minio.ts";
import { type Cluster, startCluster } from "../helpers/node/index.ts";
import { freePort } from "../helpers/ports.ts";
import { waitFor } from "../helpers/proc.ts";

const NS = "e2e";
const DATA_MOUNT = "/var/lib/walship-e2e/data";
const BUCKET = "replicas";

interface Cr {
  metadata: { name: string; generation?: number; finalizers?: string[] };
  status?: {
    phase?: string;
    generation?: string;
    lagSeconds?: number;
    lastSyncTime?: string;
    observedGeneration?: number;
    configHash?: string;
    conditions?: Array<{ type: string; status: string; reason: string; message: string }>;
    pods?: Array<{ name: string; ready: boolean; generation?: string; lagSeconds?: number }>;
  };
}
interface StsLite {
  spec: {
    template: {
      metadata?: { annotations?: Record<string, string> };
      spec: {
        initContainers?: Array<{ name: string; command?: string[] }>;
        volumes?: Array<{ name: string }>;
      };
    };
  };
}

describe("walship operator (real node, helm-installed operator, MinIO)", { timeout: 900_000 }, () => {
  let c: Cluster;
  let minio: Minio;
  let op: Operator;

  const apply = (obj: unknown) => c.apply(obj);
  const cr = async (name: string) =>
    (await c.cp.request<Cr>("GET", `/apis/walship.dev/v1alpha1/namespaces/${NS}/sqlitereplicas/${name}`))
      .body;
  const cond = (c: Cr, type: string) => c.status?.conditions?.find((x) => x.type === type);
  const pod = async (name: string) => {
    const r = await c.cp.request<PodLite>("GET", `/api/v1/namespaces/${NS}/pods/${name}`);
    return r.status === 200 ? r.body : undefined;
  };
  const sts = async (name: string) =>
    (await c.cp.request<StsLite>("GET", `/apis/apps/v1/namespaces/${NS}/statefulsets/${name}`)).body;
  const events = async (name: string) => {
    const r = await c.cp.request<{
      items: Array<{ reason: string; type: string; message: string; involvedObject: { name: string } }>;
    }>("GET", `/api/v1/namespaces/${NS}/events`);
    return r.body.items.filter((e) => e.involvedObject.name === name);
  };
  const readyPod = (name: string, pred: (p: PodLite) => boolean = () => true) =>
    readyPodIn(c, NS, name, pred);

  before(async () => {
    c = await startCluster();
    minio = await startMinio({ host: c.gateway });
    await minio.createBucket(BUCKET);
    op = await installOperator(c);
    await c.createNamespace(NS);
    await createS3Secret(c, NS, minio);
    await apply(appStatefulSet(NS, DATA_MOUNT));
  });

  after(async () => {
    await minio?.close();
    await c?.stop();
  });

  const replica = (name: string, over: Record<string, unknown> = {}) =>
    s3SqliteReplica(NS, name, minio, { mount: DATA_MOUNT, bucket: BUCKET }, over);
  it("injects the sidecar and the restore init container; data reaches MinIO; status shows Ready, generation, lag", async () => {
    const before0 = await readyPod("app-0");
    assert.equal(before0.spec.initContainers, undefined);
    await apply(replica("db"));
    const p = await readyPod("app-0", (x) => (x.spec.initContainers ?? []).some((c) => c.name === "walship"));
    assert.notEqual(p.metadata.uid, before0.metadata.uid, "the pod was rolled");
    assert.deepEqual(
      p.spec.initContainers?.map((c) => c.name),
      ["walship-restore", "walship"],
    );
    // Real containers, run by containerd.
    for (const st of [...(p.status?.initContainerStatuses ?? []), ...(p.status?.containerStatuses ?? [])])
      assert.match(st.containerID ?? "", /^containerd:\/\/[0-9a-f]{64}$/, `${st.name}'s container ID`);
    const ready = await waitFor(
      async () => {
        const c = await cr("db");
        return cond(c, "Ready")?.status === "True" && c.status?.generation ? c : undefined;
      },
      { what: "SqliteReplica db Ready with a generation", timeoutMs: 60_000, intervalMs: 500 },
    ).catch(async (err) => {
      throw new Error(
        `${(err as Error).message}: ${JSON.stringify((await cr("db")).status)}\n${await c.logs(NS, "app-0", "walship")}`,
      );
    });
    assert.equal(ready.status?.phase, "Replicating");
    assert.match(ready.status?.generation ?? "", /^[0-9a-f]{16}$/);
    assert.equal(typeof ready.status?.lagSeconds, "number");
    assert.equal(ready.status?.observedGeneration, ready.metadata.generation);
    assert.deepEqual(
      ready.status?.pods?.map((x) => [x.name, x.ready, x.generation]),
      [["app-0", true, ready.status?.generation]],
    );
    const listed = await minio
      .client()
      .send(new ListObjectsV2Command({ Bucket: BUCKET, Prefix: "app/app-0/generations/" }));
    assert.ok((listed.KeyCount ?? 0) > 0, "objects under app/app-0/generations/");
    const table = (await c.kubectl(["-n", NS, "get", "sqlitereplicas"])).stdout;
    assert.match(table, /NAME\s+STATEFULSET\s+PHASE\s+GENERATION\s+LAG\s+LAST SYNC\s+AGE/);
    assert.match(table, new RegExp(`db\\s+app\\s+Replicating\\s+${ready.status?.generation}\\s+\\d`));
    const m = await (await fetch(`${await op.url()}/metrics`)).text();
    assert.match(m, /walship_operator_reconcile_total\{result="requeue"\} \d+/);
    assert.match(m, /walship_operator_workqueue_depth \d+/);
    assert.match(m, /walship_operator_leader 1/);
  });

  it("restores a deleted database before the app starts, with nothing lost up to the last sync", async () => {
    const p = await readyPod("app-0");
    const rowsBefore = await rows(p);
    // Let the last row sync (syncInterval 200ms), then remove the database and the pod.
    await waitFor(async () => ((await cr("db")).status?.lagSeconds === 0 ? true : undefined), {
      what: "lag 0",
      timeoutMs: 20_000,
    });
    await new Promise((r) => setTimeout(r, 1000));
    const dir = await c.pvcDir(NS, "data-app-0");
    await c.cp.request("DELETE", `/api/v1/namespaces/${NS}/pods/app-0`);
    await waitFor(async () => ((await pod("app-0"))?.metadata.uid !== p.metadata.uid ? true : undefined), {
      what: "pod app-0 gone",
      timeoutMs: 60_000,
    });
    for (const f of fs.readdirSync(dir)) fs.rmSync(path.join(dir, f), { recursive: true, force: true });
    const p2 = await readyPod("app-0", (x) => x.metadata.uid !== p.metadata.uid);
    const after2 = await rows(p2);
    assert.deepEqual(
      after2.slice(0, rowsBefore.length),
      rowsBefore,
      "every row synced before the delete is back",
    );
    assert.equal(after2.length, rowsBefore.length + 1, "plus the row of this start");
    assert.match(await c.logs(NS, "app-0", "walship-restore"), /restor/i);
  });

  it("an edit of the SqliteReplica rolls the pods", async () => {
    const p = await readyPod("app-0");
    const hash = p.metadata.annotations?.["walship.dev/config-hash"];
    await apply(replica("db", { syncInterval: "300ms" }));
    const p2 = await readyPod("app-0", (x) => x.metadata.annotations?.["walship.dev/config-hash"] !== hash);
    assert.notEqual(p2.metadata.uid, p.metadata.uid);
    await waitFor(
      async () => {
        const c = await cr("db");
        return (
          cond(c, "Ready")?.status === "True" &&
          c.status?.configHash === p2.metadata.annotations?.["walship.dev/config-hash"]
        );
      },
      { what: "Ready again on the new config", timeoutMs: 60_000, intervalMs: 500 },
    );
  });

  it("a bad spec, a missing Secret, a second SqliteReplica on the same StatefulSet: a condition and an Event each", async () => {
    // Admission (the CRD schema) names the field.
    const bad = replica("bad", { database: { path: "relative.db", volumeName: "data" } });
    const file = path.join(c.cp.dir, "bad.yaml");
    fs.writeFileSync(file, stringify(bad));
    const rejected = await c.kubectl(["apply", "-f", file], { allowFailure: true });
    assert.notEqual(rejected.code, 0);
    assert.match(rejected.stderr, /spec\.database\.path/);
    // Reconcile names the field of what admission cannot know.
    await apply(replica("ghost", { statefulSetName: "ghost" }));
    await c.kubectl(["-n", NS, "delete", "secret", "s3-creds"]);
    await apply({
      apiVersion: "apps/v1",
      kind: "StatefulSet",
      metadata: { name: "other", namespace: NS },
      spec: {
        serviceName: "other",
        replicas: 0,
        selector: { matchLabels: { app: "other" } },
        template: {
          metadata: { labels: { app: "other" } },
          spec: {
            containers: [
              {
                name: "app",
                image: "walship-test/app:1",
                securityContext: RESTRICTED,
                volumeMounts: [{ name: "data", mountPath: DATA_MOUNT }],
              },
            ],
            volumes: [{ name: "data", emptyDir: {} }],
          },
        },
      },
    });
    await apply(replica("nosecret", { statefulSetName: "other" }));
    await apply(replica("second"));
    const waitReason = (name: string, reason: string) =>
      waitFor(
        async () => {
          const c = await cr(name);
          return cond(c, "Injected")?.reason === reason ? c : undefined;
        },
        { what: `${name}: Injected=False ${reason}`, timeoutMs: 30_000, intervalMs: 300 },
      );
    const waitEvent = (name: string, reason: string) =>
      waitFor(async () => (await events(name)).some((e) => e.reason === reason && e.type === "Warning"), {
        what: `${reason} Warning event on ${name}`,
        timeoutMs: 10_000,
      });
    try {
      const ghost = await waitReason("ghost", "StatefulSetNotFound");
      assert.match(
        cond(ghost, "Injected")?.message ?? "",
        /^spec\.statefulSetName: StatefulSet e2e\/ghost not found/,
      );
      await waitEvent("ghost", "StatefulSetNotFound");

      const missing = await waitReason("nosecret", "SecretMissing");
      assert.match(
        cond(missing, "Injected")?.message ?? "",
        /^spec\.destinations\[0\]\.s3\.credentials\.accessKeyId: Secret e2e\/s3-creds not found/,
      );
      assert.equal(missing.status?.phase, "Failed");
      assert.equal(cond(missing, "Ready")?.status, "False");
      assert.equal((await sts("other")).spec.template.spec.initContainers, undefined, "nothing injected");
      await waitEvent("nosecret", "SecretMissing");

      const second = await waitReason("second", "Conflict");
      assert.match(
        cond(second, "Injected")?.message ?? "",
        /already replicated by SqliteReplica db \(the same database\)/,
      );
      await waitEvent("second", "Conflict");
      // db keeps its injection.
      const app = await sts("app");
      assert.equal(app.spec.template.metadata?.annotations?.["walship.dev/sqlitereplica"], "db");
    } finally {
      await c.kubectl([
        "-n",
        NS,
        "create",
        "secret",
        "generic",
        "s3-creds",
        `--from-literal=id=${minio.accessKeyId}`,
        `--from-literal=secret=${minio.secretAccessKey}`,
      ]);
      await c.kubectl([
        "-n",
        NS,
        "delete",
        "sqlitereplica",
        "ghost",
        "nosecret",
        "second",
        "--wait=true",
        "--timeout=60s",
      ]);
    }
    assert.ok(
      (await sts("app")).spec.template.spec.initContainers?.some((c) => c.name === "walship"),
      "db's injection survives the deletes",
    );
  });

  it("an unreachable bucket: Degraded, reason ReplicationError, and a Warning Event naming the destination", async () => {
    const deadPort = await freePort(); // nothing listens there
    await apply({
      apiVersion: "apps/v1",
      kind: "StatefulSet",
      metadata: { name: "far", namespace: NS },
      spec: {
        serviceName: "far",
        replicas: 1,
        selector: { matchLabels: { app: "far" } },
        template: {
          metadata: { labels: { app: "far" } },
          spec: {
            terminationGracePeriodSeconds: 5,
            containers: [
              {
                name: "app",
                image: "walship-test/app:1",
                securityContext: RESTRICTED,
                args: ["serve"],
                env: [{ name: "DATA_DIR", value: DATA_MOUNT }],
                volumeMounts: [{ name: "data", mountPath: DATA_MOUNT }],
              },
            ],
            volumes: [{ name: "data", emptyDir: {} }],
          },
        },
      },
    });
    const far = replica("far", {
      statefulSetName: "far",
      restoreOnStart: "None",
      destinations: [
        {
          name: "offsite",
          s3: {
            bucket: BUCKET,
            path: "far",
            endpoint: `http://${c.gateway}:${deadPort}`,
            region: minio.region,
            forcePathStyle: true,
            credentials: {
              accessKeyId: { name: "s3-creds", key: "id" },
              secretAccessKey: { name: "s3-creds", key: "secret" },
            },
          },
        },
      ],
    });
    await apply(far);
    try {
      const degraded = await waitFor(
        async () => {
          const c = await cr("far");
          const d = cond(c, "Degraded");
          return d?.status === "True" && d.reason === "ReplicationError" ? c : undefined;
        },
        { what: "SqliteReplica far Degraded: ReplicationError", timeoutMs: 90_000, intervalMs: 500 },
      ).catch(async (err) => {
        throw new Error(
          `${(err as Error).message}: ${JSON.stringify((await cr("far")).status)}\n${await c.logs(NS, "far-0", "walship")}`,
        );
      });
      const d = cond(degraded, "Degraded");
      assert.match(d?.message ?? "", /^pod far-0: .*destination offsite: /);
      assert.equal(degraded.status?.phase, "Degraded");
      assert.equal(cond(degraded, "Injected")?.status, "True");
      assert.equal(cond(degraded, "Ready")?.status, "False");
      assert.equal(cond(degraded, "Ready")?.reason, "ReplicationError");
      const ev = await waitFor(
        async () =>
          (await events("far")).find(
            (e) =>
              e.reason === "ReplicationError" &&
              e.type === "Warning" &&
              /destination offsite/.test(e.message),
          ),
        { what: "ReplicationError Warning event on far naming destination offsite", timeoutMs: 10_000 },
      );
      assert.match(ev.message, /far-0/);
    } finally {
      await c.kubectl(["-n", NS, "delete", "sqlitereplica", "far", "--wait=true", "--timeout=60s"]);
      await c.kubectl(["-n", NS, "delete", "statefulset", "far", "--wait=false"]);
    }
  });

  it("a StatefulSet with two pods: per-pod status for both, aggregated at the top (the largest lag)", async () => {
    await c.kubectl(["-n", NS, "scale", "statefulset", "app", "--replicas=2"]);
    try {
      await readyPod("app-1", (x) => (x.spec.initContainers ?? []).some((c) => c.name === "walship"));
      const both = await waitFor(
        async () => {
          const c = await cr("db");
          const pods = c.status?.pods ?? [];
          return cond(c, "Ready")?.status === "True" &&
            pods.length === 2 &&
            pods.every((p) => p.ready && p.generation && p.lagSeconds !== undefined)
            ? c
            : undefined;
        },
        { what: "SqliteReplica db Ready with two pods reporting", timeoutMs: 60_000, intervalMs: 500 },
      ).catch(async (err) => {
        throw new Error(`${(err as Error).message}: ${JSON.stringify((await cr("db")).status)}`);
      });
      const pods = both.status?.pods ?? [];
      assert.deepEqual(
        pods.map((p) => p.name),
        ["app-0", "app-1"],
      );
      for (const p of pods) assert.match(p.generation ?? "", /^[0-9a-f]{16}$/, `${p.name}'s generation`);
      assert.notEqual(pods[0]?.generation, pods[1]?.generation, "two databases, two generations");
      assert.equal(both.status?.generation, pods[0]?.generation, "the top generation is the first pod's");
      assert.equal(both.status?.lagSeconds, Math.max(...pods.map((p) => p.lagSeconds ?? -1)));
      const listed = await minio
        .client()
        .send(new ListObjectsV2Command({ Bucket: BUCKET, Prefix: "app/app-1/generations/" }));
      assert.ok((listed.KeyCount ?? 0) > 0, "objects under app/app-1/generations/");
    } finally {
      await c.kubectl(["-n", NS, "scale", "statefulset", "app", "--replicas=1"]);
      await waitFor(async () => ((await pod("app-1")) === undefined ? true : undefined), {
        what: "pod app-1 gone",
        timeoutMs: 60_000,
      });
    }
  });

  it("deleting the SqliteReplica removes the injection and the app keeps running", async () => {
    const p = await readyPod("app-0");
    const rowsBefore = await rows(p);
    await c.kubectl(["-n", NS, "delete", "sqlitereplica", "db", "--wait=true", "--timeout=60s"]);
    const s = await sts("app");
    assert.equal(s.spec.template.spec.initContainers, undefined);
    assert.deepEqual(s.spec.template.spec.volumes ?? [], []);
    assert.equal(s.spec.template.metadata?.annotations?.["walship.dev/config-hash"], undefined);
    const p2 = await readyPod("app-0", (x) => (x.spec.initContainers ?? []).length === 0);
    const after2 = await rows(p2);
    assert.deepEqual(after2.slice(0, rowsBefore.length), rowsBefore, "the data stays");
  });

  it("the operator's identity has only deploy/rbac: no Secret listing, no deletes, a Kubernetes API error code", async () => {
    const client = KubeClient.load(await c.cp.kubeconfigFor(await c.cp.tokenFor(OPERATOR_NS, "walship")));
    for (const [method, p] of [
      ["GET", `/api/v1/namespaces/${NS}/secrets`],
      ["DELETE", `/apis/apps/v1/namespaces/${NS}/statefulsets/app`],
      ["DELETE", `/api/v1/namespaces/${NS}/pods/app-0`],
      ["GET", `/apis/coordination.k8s.io/v1/namespaces/${NS}/leases`],
      ["GET", "/api/v1/nodes"],
    ] as const) {
      await assert.rejects(
        client.request(method, p),
        { code: "WALSHIP_ERR_KUBE", status: 403 },
        `${method} ${p}`,
      );
    }
    // What it does need, it has.
    await client.get(`/api/v1/namespaces/${NS}/secrets/s3-creds`);
    await client.request("GET", `/api/v1/namespaces/${NS}/pods`);
  });

  it("restarted mid-reconcile, a new operator converges: Ready, generation, lag", async () => {
    await apply(replica("again"));
    // Stop the operator as soon as it has injected the StatefulSet, before the pods have rolled.
    await waitFor(
      async () =>
        (await sts("app")).spec.template.metadata?.annotations?.["walship.dev/sqlitereplica"] === "again"
          ? true
          : undefined,
      { what: "StatefulSet app injected for again", timeoutMs: 30_000, intervalMs: 50 },
    );
    await op.stop();
    const mid = await cr("again");
    assert.notEqual(cond(mid, "Ready")?.status, "True", "stopped before it converged");
    assert.equal(mid.status?.generation, undefined);
    await op.start();
    const ready = await waitFor(
      async () => {
        const c = await cr("again");
        return cond(c, "Ready")?.status === "True" && c.status?.generation ? c : undefined;
      },
      { what: "SqliteReplica again Ready under the new operator", timeoutMs: 90_000, intervalMs: 500 },
    ).catch(async (err) => {
      throw new Error(`${(err as Error).message}: ${JSON.stringify((await cr("again")).status)}`);
    });
    assert.equal(ready.status?.phase, "Replicating");
    assert.match(ready.status?.generation ?? "", /^[0-9a-f]{16}$/);
    assert.equal(typeof ready.status?.lagSeconds, "number");
    assert.equal(ready.status?.observedGeneration, ready.metadata.generation);
    assert.deepEqual(
      ready.status?.pods?.map((x) => [x.name, x.ready]),
      [["app-0", true]],
    );
    assert.match(await (await fetch(`${await op.url()}/metrics`)).text(), /walship_operator_leader 1/);
  });

  it("restoreOnStart RefuseIfReplicaExists: a pod whose database is gone stays in Init, with a condition and an Event", async () => {
    const restoreHas =
      (flag: string) => (x: { spec: { initContainers?: Array<{ name: string; command?: string[] }> } }) =>
        (x.spec.initContainers ?? []).some(
          (c) => c.name === "walship-restore" && (c.command ?? []).includes(flag),
        );
    await apply(replica("again", { restoreOnStart: "RefuseIfReplicaExists" }));
    const p = await readyPod("app-0", restoreHas("-refuse-if-replica-exists"));
    const rowsBefore = await rows(p);
    await waitFor(
      async () => {
        const c = await cr("again");
        return cond(c, "Ready")?.status === "True" && c.status?.lagSeconds === 0 ? true : undefined;
      },
      { what: "again Ready with lag 0", timeoutMs: 30_000, intervalMs: 300 },
    );
    await new Promise((r) => setTimeout(r, 1000));
    // The database goes away while the pod is down.
    await c.kubectl(["-n", NS, "scale", "statefulset", "app", "--replicas=0"]);
    await waitFor(async () => ((await pod("app-0")) === undefined ? true : undefined), {
      what: "pod app-0 gone",
      timeoutMs: 60_000,
    });
    const dir = await c.pvcDir(NS, "data-app-0");
    for (const f of fs.readdirSync(dir)) fs.rmSync(path.join(dir, f), { recursive: true, force: true });
    await c.kubectl(["-n", NS, "scale", "statefulset", "app", "--replicas=1"]);
    const held = await waitFor(
      async () => {
        const c = await cr("again");
        return cond(c, "Degraded")?.reason === "RestoreFailed" ? c : undefined;
      },
      { what: "again Degraded: RestoreFailed", timeoutMs: 60_000, intervalMs: 300 },
    ).catch(async (err) => {
      throw new Error(`${(err as Error).message}: ${JSON.stringify((await cr("again")).status)}`);
    });
    assert.match(
      cond(held, "Degraded")?.message ?? "",
      /^pod app-0: init container walship-restore exited 1 \(restarts \d+\): refusing to start: .*RefuseIfReplicaExists/,
    );
    assert.equal(held.status?.phase, "Degraded");
    assert.equal(cond(held, "Ready")?.reason, "RestoreFailed");
    await waitFor(
      async () => (await events("again")).some((e) => e.reason === "RestoreFailed" && e.type === "Warning"),
      { what: "RestoreFailed Warning event on again", timeoutMs: 10_000 },
    );
    const heldPod = await pod("app-0");
    assert.equal(heldPod?.status?.phase, "Pending", "the app does not start");
    assert.match(await c.logs(NS, "app-0", "walship-restore"), /WALSHIP_ERR_EXISTS/);
    assert.deepEqual(
      fs.readdirSync(dir).filter((f) => f.startsWith("app.db")),
      [],
      "nothing restored, nothing created",
    );
    // The way out: restore (here by switching to IfReplicaExists) and delete the held pod.
    await apply(replica("again"));
    await waitFor(
      async () => (restoreHas("-if-replica-exists")((await sts("app")).spec.template) ? true : undefined),
      {
        what: "StatefulSet app restores on start again",
        timeoutMs: 30_000,
      },
    );
    await c.cp.request("DELETE", `/api/v1/namespaces/${NS}/pods/app-0`);
    const p2 = await readyPod(
      "app-0",
      (x) => x.metadata.uid !== heldPod?.metadata.uid && restoreHas("-if-replica-exists")(x),
    );
    const after2 = await rows(p2);
    assert.deepEqual(after2.slice(0, rowsBefore.length), rowsBefore, "every synced row is back");
    assert.equal(after2.length, rowsBefore.length + 1, "plus the row of this start");
    await waitFor(async () => (cond(await cr("again"), "Ready")?.status === "True" ? true : undefined), {
      what: "again Ready again",
      timeoutMs: 60_000,
      intervalMs: 500,
    });
  });

  it("a destination outage: the app stays Ready (it stays in its Service), the SqliteReplica shows Degraded", async () => {
    await apply(replica("again")); // as the test before leaves it; lets this one run alone too
    const p = await readyPod("app-0", (x) => (x.spec.initContainers ?? []).some((i) => i.name === "walship"));
    await waitFor(async () => (cond(await cr("again"), "Ready")?.status === "True" ? true : undefined), {
      what: "again Ready before the outage",
      timeoutMs: 60_000,
      intervalMs: 500,
    });
    // The app keeps writing through the outage (a row a second, as another connection to its database).
    const dataDir = await c.pvcDir(NS, "data-app-0");
    let writes = 0;
    const writer = setInterval(() => {
      const db = new Database(path.join(dataDir, "app.db"));
      try {
        db.prepare("INSERT INTO starts (pod, at) VALUES (?, ?)").run(
          `outage-${++writes}`,
          new Date().toISOString(),
        );
      } finally {
        db.close();
      }
    }, 1000);
    await minio.stop();
    let p2: PodLite | undefined;
    let notReady = 0;
    let degradedAt = 0;
    try {
      // Through the outage, until Degraded shows and 15 s after: the pod must never leave Ready.
      await waitFor(
        async () => {
          const now = await pod("app-0");
          const ready = now?.status?.conditions?.some((x) => x.type === "Ready" && x.status === "True");
          if (!ready || now?.metadata.uid !== p.metadata.uid) notReady++;
          const d = cond(await cr("again"), "Degraded");
          if (!degradedAt && d?.status === "True" && d.reason === "ReplicationError") degradedAt = Date.now();
          return degradedAt && Date.now() - degradedAt > 15_000 ? true : undefined;
        },
        { what: "again Degraded: ReplicationError during the outage", timeoutMs: 180_000, intervalMs: 250 },
      ).catch(async (err) => {
        throw new Error(`${(err as Error).message}: ${JSON.stringify((await cr("again")).status)}`);
      });
      assert.equal(notReady, 0, "the app pod stayed Ready (and the same pod) through the outage");
      // A pod that starts during the outage (a rollout, a rescheduled pod) becomes Ready too: its
      // replicator cannot sync yet, which is the SqliteReplica's business, not the Service's.
      await c.cp.request("DELETE", `/api/v1/namespaces/${NS}/pods/app-0`);
      p2 = await readyPodIn(c, NS, "app-0", (x) => x.metadata.uid !== p.metadata.uid, 120_000);
      assert.equal(minio.process, undefined, "MinIO was still down when the new pod became Ready");
    } finally {
      clearInterval(writer);
      await minio.restart();
    }
    const back = await waitFor(
      async () => {
        const x = await cr("again");
        return cond(x, "Ready")?.status === "True" && cond(x, "Degraded")?.status !== "True" ? x : undefined;
      },
      { what: "again Ready again after the outage", timeoutMs: 120_000, intervalMs: 500 },
    );
    assert.equal(back.status?.phase, "Replicating");
    // Nothing written during the outage is lost: a restore of the latest state has every row.
    assert.ok(p2);
    const all = await rows(p2);
    assert.equal(all.filter((r) => r.pod.startsWith("outage-")).length, writes);
    await waitFor(async () => ((await cr("again")).status?.lagSeconds === 0 ? true : undefined), {
      what: "lag 0 after the outage",
      timeoutMs: 60_000,
    });
  });
});
